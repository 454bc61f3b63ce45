"""torch_utils.atomic: a write that fails midway leaves the previous file and no temporary behind."""
import json
import os
import stat

import pytest

from torch_utils.atomic import atomic_output, atomic_write, atomic_write_bytes


def test_complete_write_replaces_the_file(tmp_path):
    path = tmp_path / 'sub' / 'a.bin'
    atomic_write_bytes(path, b'one')
    atomic_write(path, lambda f: f.write(b'two'))
    assert path.read_bytes() == b'two'
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert os.listdir(path.parent) == ['a.bin']


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / 'a.bin'
    atomic_write_bytes(path, b'old')

    def half_then_fail(f):
        f.write(b'half')
        raise RuntimeError('disk on fire')

    with pytest.raises(RuntimeError):
        atomic_write(path, half_then_fail)
    with pytest.raises(KeyboardInterrupt):
        with atomic_output(path, suffix='.mp4') as tmp:
            assert tmp.endswith('.mp4') and os.path.dirname(tmp) == str(tmp_path)
            open(tmp, 'wb').write(b'partial')
            raise KeyboardInterrupt
    assert path.read_bytes() == b'old'
    assert os.listdir(tmp_path) == ['a.bin']


def test_a_full_disk_names_the_file_it_was_writing(tmp_path):
    import errno

    from torch_utils.cli import describe
    path = tmp_path / 'network-snapshot-000004.pkl'

    def disk_full(f):
        f.write(b'part')
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))   # what write() raises: no file name

    with pytest.raises(OSError) as info:
        atomic_write(path, disk_full)
    assert describe(info.value) == f'{path}: No space left on device'
    assert info.value.errno == errno.ENOSPC and os.listdir(tmp_path) == []


def test_a_refused_temporary_is_reported_under_the_output_name(tmp_path, monkeypatch):
    import errno
    import tempfile

    from torch_utils.cli import describe
    path = tmp_path / 'x.pt'

    def refuse(dir, prefix, suffix):   # noqa: A002 - what a read-only folder does to mkstemp
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.path.join(dir, prefix + 'abc' + suffix))

    monkeypatch.setattr(tempfile, 'mkstemp', refuse)
    with pytest.raises(OSError) as info:
        atomic_write_bytes(path, b'data')
    assert describe(info.value) == f'{path}: Permission denied'


def test_json_that_cannot_be_encoded_leaves_the_previous_file(tmp_path):
    from torch_utils.atomic import atomic_write_json
    path = tmp_path / 'best.json'
    atomic_write_json(path, {'fid': 1.5, 'rows': [1, 2]})
    assert path.read_text() == '{\n  "fid": 1.5,\n  "rows": [\n    1,\n    2\n  ]\n}\n'
    with pytest.raises(TypeError):
        atomic_write_json(path, {'fid': object()})
    assert json.loads(path.read_text()) == {'fid': 1.5, 'rows': [1, 2]} and os.listdir(tmp_path) == ['best.json']

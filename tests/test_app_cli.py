"""app.py's command line: a model that is not there is one line on stderr and exit code 1, before any server starts."""
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.append(os.path.join(REPO, 'benchmarks'))   # last: its inversion.py and metrics.py would shadow the packages


def test_missing_model_is_one_line():
    pytest.importorskip('gradio')
    r = subprocess.run([sys.executable, os.path.join(REPO, 'app.py'), '--network=no-such-model', '--port=1'],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert r.stderr.startswith('error: no-such-model: no such file, and not the name of a model in pretrained') \
        and '--network=PATH' in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_a_run_directory_is_named_by_its_snapshot_and_startup_says_what_is_served(tmp_path):
    """--network=RUN_DIR: the header, the startup lines and the commands name the snapshot the run dir
    resolved to (a newer snapshot later must not change what "exactly this image" means); gradio's own
    "set share=True in launch()" advice is not printed; the Invert tab has its own class menu."""
    pytest.importorskip('gradio')
    import json
    import urllib.request
    import browser   # benchmarks/browser.py
    from networks.snapshot import save_snapshot
    from helpers.networks import tiny_networks
    run = tmp_path / 'runs' / '00000-tiny'
    run.mkdir(parents=True)
    data = tiny_networks('stylegan2', c_dim=2)
    data['training_set_kwargs'] = dict(path='x.zip', use_labels=True, class_names=['shirt', 'dress'])
    save_snapshot(run / 'network-snapshot-000004.pkl', data)
    app = browser.App(f'--network={tmp_path / "runs"}', '--device=cpu', '--perceptual=none')
    try:
        with urllib.request.urlopen(app.url + 'config', timeout=30) as r:
            config = json.loads(r.read())
        # the server answers before launch() returns and the app prints what it serves
        browser.wait_for(lambda: 'open http' in app.output(), 60, 'the startup lines')
    finally:
        out = app.stop()
    snapshot = str(run / 'network-snapshot-000004.pkl')
    assert f'network: {snapshot} (from --network={tmp_path / "runs"})' in out, out
    assert 'directions: none' in out and f'open {app.url}' in out and '--share' in out, out
    assert 'share=True' not in out and 'launch()' not in out, out
    components = {c['id']: c for c in config['components']}
    header = next(c['props']['value'] for c in components.values() if c.get('type') == 'markdown'
                  and 'Garment studio' in str(c['props'].get('value')))
    assert f'`{snapshot}`' in header, header
    by_elem = {c['props'].get('elem_id'): c['id'] for c in components.values() if c['props'].get('elem_id')}
    invert = next(d for d in config['dependencies'] if any(t[0] == by_elem['invert-btn'] for t in d['targets']))
    assert by_elem['invert-class'] in invert['inputs'] and by_elem['class'] not in invert['inputs']
    assert [name for name, _ in components[by_elem['invert-class']]['props']['choices']] == ['shirt', 'dress']


def test_a_host_or_port_it_cannot_listen_on_is_named_in_one_line():
    # Both ended in gradio's "Cannot find empty port ... server_port parameter to launch()".
    pytest.importorskip('gradio')
    import socket
    with socket.socket() as busy:
        busy.bind(('127.0.0.1', 0))
        busy.listen()
        port = busy.getsockname()[1]
        for args, message in [([f'--port={port}'], f'error: --port={port}: already in use on 127.0.0.1; pass another --port'),
                              (['--host=999.1.1.1'], 'error: --host=999.1.1.1: not an address to listen on')]:
            r = subprocess.run([sys.executable, os.path.join(REPO, 'app.py'), *args], capture_output=True, text=True,
                               timeout=120)
            assert r.returncode == 1 and r.stderr.startswith(message), r.stderr
            assert len(r.stderr.strip().splitlines()) == 1 and 'launch()' not in r.stderr, r.stderr


def test_only_a_user_error_becomes_a_message_on_the_page(capsys):
    # ValueError and KeyError raised anywhere were shown as user messages, without a traceback in the log.
    pytest.importorskip('gradio')
    from app.page import guarded
    from torch_utils.cli import UserError
    status = object()

    def failing(error):
        def handler():
            raise error
        return guarded(status, handler)
    assert failing(UserError('photo.png: not an image'))() == {status: '**photo.png: not an image**'}
    for bug in (ValueError('x must be positive'), KeyError('cls')):
        out = failing(bug)()
        assert out == {status: f'**internal error ({type(bug).__name__}); the server log has the details**'}
        assert 'Traceback' in capsys.readouterr().err

"""Finding and loading detectors, and the download cache, without touching the network."""
import functools
import http.server
import os
import threading

import pytest
import torch

from metrics import detectors
from metrics.detectors import DETECTORS, DetectorSpec, load_detector_file, locate_detector
from metrics import DetectorError
from metrics.standin import save_standin_detectors
from torch_utils.download import DownloadError, cached_path, download_cached


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv('SG3C_CACHE', str(tmp_path / 'cache'))
    monkeypatch.delenv('SG3C_DETECTOR_DIR', raising=False)


@pytest.fixture
def server(tmp_path):
    """A local HTTP server over tmp_path/www that counts requests."""
    root = tmp_path / 'www'
    root.mkdir()
    hits = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f'http://127.0.0.1:{httpd.server_address[1]}', hits
    httpd.shutdown()
    httpd.server_close()


def closed_port_url(name):
    return f'http://127.0.0.1:9/{name}'     # the discard port: nothing listens, the connection is refused


def test_download_is_cached_atomic_and_reused(server):
    root, base, hits = server
    (root / 'blob.bin').write_bytes(os.urandom(3 << 20))
    path = download_cached(f'{base}/blob.bin', progress=False)
    assert open(path, 'rb').read() == (root / 'blob.bin').read_bytes()
    assert download_cached(f'{base}/blob.bin', progress=False) == path and len(hits) == 1
    assert not [f for f in os.listdir(os.path.dirname(path)) if f.endswith('.part')]


def test_failed_download_is_one_line_naming_url_and_destination(server):
    _, base, _ = server
    url = f'{base}/missing.pt'
    with pytest.raises(DownloadError) as e:
        download_cached(url, progress=False)
    message = str(e.value)
    assert '\n' not in message and url in message and cached_path(url) in message
    assert not os.path.exists(cached_path(url))
    assert not [f for f in os.listdir(os.path.dirname(cached_path(url)))]


def test_file_urls_are_returned_as_paths(tmp_path):
    p = tmp_path / 'x.bin'
    p.write_bytes(b'abc')
    assert download_cached(p.as_uri()) == str(p)


def test_detector_dir_and_environment_variable(tmp_path, monkeypatch):
    paths = save_standin_detectors(str(tmp_path / 'det'))
    assert locate_detector('inception', detector_dir=str(tmp_path / 'det')) == paths['inception']
    monkeypatch.setenv('SG3C_DETECTOR_DIR', str(tmp_path / 'det'))
    assert locate_detector('vgg16') == paths['vgg16']
    module = load_detector_file(paths['inception'], torch.device('cpu'))
    feats = module(torch.zeros([2, 3, 16, 16], dtype=torch.uint8), return_features=True)
    probs = module(torch.zeros([2, 3, 16, 16], dtype=torch.uint8), no_output_bias=True)
    assert feats.shape == (2, 48) and torch.allclose(probs.sum(1), torch.ones(2))


def test_missing_detector_in_named_dir_is_one_clear_line(tmp_path):
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(DetectorError) as e:
        locate_detector('inception', detector_dir=str(empty))
    message = str(e.value)
    assert '\n' not in message and DETECTORS['inception'].url in message
    assert str(empty / 'inception-2015-12-05.pt') in message


def test_nvidia_pickles_are_refused_with_the_file_to_use_instead(tmp_path):
    d = tmp_path / 'pkl'
    d.mkdir()
    (d / 'vgg16.pkl').write_bytes(b'\x80\x04not really')
    with pytest.raises(DetectorError, match='pickle.*vgg16.pt'):
        locate_detector('vgg16', detector_dir=str(d))
    with pytest.raises(DetectorError, match='TorchScript'):
        load_detector_file(str(d / 'vgg16.pkl'), torch.device('cpu'))


def test_corrupt_detector_file_is_reported(tmp_path, monkeypatch):
    bad = tmp_path / 'inception-2015-12-05.pt'
    bad.write_bytes(b'this is not a zip archive')
    with pytest.raises(DetectorError, match='executable code, and this one is not a known file'):
        load_detector_file(str(bad), torch.device('cpu'))   # not NVIDIA's file: refused before torch reads it
    monkeypatch.setenv('SG3C_TRUST_TORCHSCRIPT', str(bad))
    with pytest.raises(DetectorError, match='not a readable TorchScript'):
        load_detector_file(str(bad), torch.device('cpu'))


def test_offline_without_the_file_says_what_to_download_and_where(monkeypatch, tmp_path):
    spec = DETECTORS['inception']
    monkeypatch.setitem(DETECTORS, 'inception', DetectorSpec(spec.name, spec.filename,
                                                              closed_port_url(spec.filename), spec.pickle_url))
    with pytest.raises(DetectorError) as e:
        locate_detector('inception', progress=False)
    message = str(e.value)
    assert '\n' not in message and closed_port_url(spec.filename) in message
    assert os.path.join(detectors.default_detector_dir(), spec.filename) in message and '--detector-dir' in message


def test_downloaded_detector_lands_in_the_detector_cache(server, monkeypatch):
    root, base, hits = server
    save_standin_detectors(str(root))
    spec = DETECTORS['vgg16']
    monkeypatch.setitem(DETECTORS, 'vgg16', DetectorSpec(spec.name, spec.filename, f'{base}/vgg16.pt', spec.pickle_url))
    path = locate_detector('vgg16', progress=False)
    assert path == os.path.join(detectors.default_detector_dir(), 'vgg16.pt')
    assert locate_detector('vgg16', download=False) == path and len(hits) == 1

"""Fetching files by URL once and keeping them in a local cache.

Snapshots given as `--network=https://...` and the metric detectors both come through here. The cache
lives in `$SG3C_CACHE/downloads` (default `~/.cache/stylegan3-clothing/downloads`). A download goes to a
temporary file beside its destination and is renamed into place only when complete, so an interrupted
transfer never leaves a truncated file that a later run would trust.
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from typing import Optional, Union


from tqdm import tqdm

from torch_utils.cli import UserError

PathLike = Union[str, os.PathLike]


class DownloadError(UserError):
    """A URL that could not be fetched; the message names it and the local file to provide instead."""


def is_url(text: str) -> bool:
    return bool(re.match(r'^(https?|file)://', str(text)))


def cache_root() -> str:
    """`$SG3C_CACHE`, or `~/.cache/stylegan3-clothing`."""
    return os.environ.get('SG3C_CACHE') or os.path.join(os.path.expanduser('~'), '.cache', 'stylegan3-clothing')


def default_download_dir() -> str:
    return os.path.join(cache_root(), 'downloads')


def cached_path(url: str, cache_dir: Optional[PathLike] = None, filename: Optional[str] = None) -> str:
    """Where `url` is (or would be) kept in the cache.

    Without an explicit `filename` the name is prefixed by a hash of the URL, so that two URLs ending in
    the same file name never share a cache entry."""
    directory = os.fspath(cache_dir) if cache_dir is not None else default_download_dir()
    if filename is None:
        base = os.path.basename(urllib.parse.urlparse(url).path) or 'download'
        base = re.sub(r'[^A-Za-z0-9._-]', '_', base)
        filename = f'{hashlib.sha1(url.encode()).hexdigest()[:12]}_{base}'
    return os.path.join(directory, filename)


def download_cached(url: str, cache_dir: Optional[PathLike] = None, filename: Optional[str] = None,
                    progress: bool = True, timeout: float = 60) -> str:
    """Local path of `url`, downloading it first unless the cache already has it.

    `file://` URLs are returned as paths without copying. Raises DownloadError (one line) when the
    transfer fails."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == 'file':
        path = urllib.request.url2pathname(parsed.path)
        if not os.path.isfile(path):
            raise DownloadError(f'{url}: no such file')
        return path
    dest = cached_path(url, cache_dir, filename)
    if os.path.isfile(dest):
        return dest
    directory = os.path.dirname(dest)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='.' + os.path.basename(dest) + '.', suffix='.part')
    try:
        with os.fdopen(fd, 'wb') as out:
            request = urllib.request.Request(url, headers={'User-Agent': 'stylegan3-clothing'})
            with urllib.request.urlopen(request, timeout=timeout) as response:
                total = response.headers.get('Content-Length')
                with tqdm(total=int(total) if total else None, unit='B', unit_scale=True, unit_divisor=1024,
                          desc=f'downloading {os.path.basename(parsed.path)}', disable=not progress,
                          leave=False) as bar:
                    while True:
                        chunk = response.read(1 << 20)
                        if not chunk:
                            break
                        out.write(chunk)
                        bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, 'reason', None) or e
        raise DownloadError(f'cannot download {url} ({reason}); without network, fetch it elsewhere and save it '
                            f'as {dest}') from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest



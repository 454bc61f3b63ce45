"""Run independent chunks of CPU work on one thread per core, each op single-threaded.

Chunked ops (filtered_lrelu's channel chunks) issue many medium-sized ops. Run one after another,
each op is split over the OpenMP team and ends at a barrier; when another process shares the cores,
the barrier waits for whichever thread was descheduled, often a whole scheduler time slice per op
(measured: 3-4x slower than below on a busy 2-core machine). Instead, workers take whole chunks,
one at a time, and run every op of a chunk on their own thread: no barriers, dynamic balancing,
and each chunk stays in its core's cache.

Only for PyTorch's OpenMP backend, where a thread's team size is a per-thread setting: each worker
sets its own to 1 once at start-up, and the process-wide value is put back straight after.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Optional, TypeVar

import torch

T = TypeVar('T')
R = TypeVar('R')

_lock = threading.Lock()
_pool: Optional[ThreadPoolExecutor] = None
_pool_size = 0
_local = threading.local()
_openmp: Optional[bool] = None


def _is_openmp() -> bool:
    global _openmp
    if _openmp is None:
        _openmp = 'parallel backend: OpenMP' in torch.__config__.parallel_info()
    return _openmp


def _init_worker() -> None:
    _local.is_worker = True
    torch.get_num_threads()    # the thread's lazy threading setup runs now, not later over our setting
    torch.set_num_threads(1)


def _get_pool(size: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size != size:
            if _pool is not None:
                _pool.shutdown(wait=False)
            pool = ThreadPoolExecutor(size, initializer=_init_worker, thread_name_prefix='sg3c-cpu-worker')
            started = threading.Barrier(size + 1)
            for _ in range(size):   # make every worker thread start (and initialise) now
                pool.submit(started.wait)
            started.wait()
            torch.set_num_threads(size)   # the workers' set_num_threads(1) also changed the process default
            _pool, _pool_size = pool, size
        return _pool


def workers() -> int:
    """How many threads map_chunks spreads chunks over (1: it runs them on the calling thread)."""
    threads = torch.get_num_threads()
    return threads if threads >= 2 and _is_openmp() and not getattr(_local, 'is_worker', False) else 1


def chunk_size(total: int, most: int, align: int) -> int:
    """A chunk size for splitting `total` items: at most `most` (but at least `align`), a multiple of `align`,
    and where that costs no extra chunks of `most`, one that gives every worker the same number of chunks,
    so that none idles at the end (512 channels in chunks of at most 288: two of 256, not 288 and 224)."""
    most = max(align, most // align * align)
    count = -(-total // most)
    count = -(-count // workers()) * workers()
    size = -(-total // count)
    return min(-(-size // align) * align, total)


def map_chunks(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """[fn(item) for item in items], on single-threaded workers (one per intra-op thread) when that helps."""
    items = list(items)
    threads = workers()
    if len(items) < 2 or threads < 2:
        return [fn(item) for item in items]
    pool = _get_pool(threads)
    # Autograd and inference modes are per thread: carry the caller's over.
    if torch.is_inference_mode_enabled():
        mode = torch.inference_mode
    elif not torch.is_grad_enabled():
        mode = torch.no_grad
    else:
        mode = torch.enable_grad

    def run(item: T) -> R:
        with mode():
            return fn(item)

    return list(pool.map(run, items))

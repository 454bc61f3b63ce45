"""A cache whose values are computed once per key, without holding a lock that other keys need.

The app's shared results (GANSpace directions, latent statistics per class) take seconds to minutes. Computed
under one lock, a long discovery kept every other tab from starting an inversion; here each key has its own
wait, and the lock only guards the bookkeeping.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Hashable


class ComputeOnce:
    def __init__(self):
        self._lock = threading.Lock()
        self._values: dict = {}
        self._running: dict[Hashable, threading.Event] = {}

    def get(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """The value for `key`, computed by `compute()` in the first caller; later callers for the same key wait
        for it (and compute it themselves if that caller failed), callers for other keys do not wait."""
        while True:
            with self._lock:
                if key in self._values:
                    return self._values[key]
                running = self._running.get(key)
                if running is None:
                    running = self._running[key] = threading.Event()
                    break
            running.wait()
        try:
            value = compute()
            with self._lock:
                self._values[key] = value
            return value
        finally:
            with self._lock:
                del self._running[key]
            running.set()

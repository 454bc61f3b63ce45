"""Stopping a run cleanly: Ctrl-C or SIGTERM finishes the step, writes a snapshot and ends the run."""
from __future__ import annotations

import signal
from typing import Any, Optional

from tqdm import tqdm

from torch_utils import distributed

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)   # what StopFlag turns into a snapshot and a clean exit


class StopFlag:
    """Ctrl-C (SIGINT) or SIGTERM finishes the current step, writes a snapshot and ends the run cleanly.

    Installed as early as possible (train.py does it before anything is created), so that an early
    Ctrl-C still ends in a snapshot after the first step. `external` is an event a launching parent
    process sets when it got the signal while this process could not hear it yet (starting up)."""

    def __init__(self, external: Any = None):
        self.requested = False
        self.external = external
        # The loop keeps `step_from` at cur_nimg where the step in progress (or the next one) starts; the
        # handler records it, so that the log shows the run stopped after exactly that step.
        self.step_from: Optional[int] = None
        self.requested_at: Optional[int] = None
        self.previous = {}
        for sig in STOP_SIGNALS:
            try:
                self.previous[sig] = signal.signal(sig, self._handle)
            except ValueError:   # not the main thread
                pass

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:   # a second Ctrl-C aborts at once; a repeated SIGTERM
            raise KeyboardInterrupt                      # (a scheduler's reminder) still lets the snapshot finish
        if not self.requested:
            self.requested_at = self.step_from
        self.requested = True
        if distributed.rank() == 0:
            tqdm.write('stopping after this step; a snapshot will be written (Ctrl-C again to abort)')

    def agreed(self) -> bool:
        """True when any rank was asked to stop (all ranks must call this every step)."""
        if self.external is not None and self.external.is_set():
            self.requested = True
        return distributed.any_rank(self.requested)

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

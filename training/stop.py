"""Stopping a run cleanly: Ctrl-C or SIGTERM finishes the step, writes a snapshot and ends the run with exit code
128 + the signal's number (130 for Ctrl-C, as a shell reports an interrupted command), so that `train.py ... &&
next` does not carry on; a second Ctrl-C aborts at once, without a snapshot."""
from __future__ import annotations

import os
import signal
import sys
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
        self.signum: Optional[int] = None    # the first stop signal
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
        if self.requested and signum == signal.SIGINT:   # a second Ctrl-C aborts at once, as the first one's
            abort()                                      # message says; a repeated SIGTERM (a scheduler's
        self.note(signum)                                # reminder) still lets the snapshot finish
        if distributed.rank() == 0:
            tqdm.write('stopping after this step; a snapshot will be written (Ctrl-C again to abort)')

    def note(self, signum: int) -> None:
        """Record a stop request (the launcher of several processes passes it on instead of stopping itself)."""
        if not self.requested:
            self.requested_at = self.step_from
            self.signum = signum
        self.requested = True

    @property
    def exit_code(self) -> int:
        """0, or 128 + the signal that stopped the run (130: Ctrl-C)."""
        return 128 + self.signum if self.requested and self.signum else 0

    def agreed(self) -> bool:
        """True when any rank was asked to stop (all ranks must call this every step)."""
        if self.external is not None and self.external.is_set():
            self.requested = True
        return distributed.any_rank(self.requested)

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def abort() -> None:
    """End this process now, without a snapshot: what a second Ctrl-C asks for. A write it cuts short leaves
    only a temporary file, which the next resume removes; the last snapshot stays."""
    if distributed.rank() == 0:
        print('\naborted: no snapshot written (the last one stays; --resume continues from it)', file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(130)

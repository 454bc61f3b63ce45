"""Starting the training processes: this one, `--gpus` spawned ones, or one of torchrun's; and passing a
stop request (Ctrl-C, SIGTERM) to every one of them, so that the run ends with a snapshot (exit 130 after
Ctrl-C) and a second Ctrl-C aborts at once."""
from __future__ import annotations

import os
import signal
import sys
import tempfile
import traceback
from typing import Any, Callable, Optional

import torch

from torch_utils import distributed
from torch_utils.cli import EXPECTED, debug_enabled, describe
from training import training_loop as tl
from training.options import TrainingOptions
from training.stop import STOP_SIGNALS, StopFlag, abort

# The metrics a run computes at each snapshot, for one rank on its device (the metrics layer's
# TrainingMetrics.for_run, above this one); None for none. Spawned processes get it pickled.
MetricsForRun = Callable[[TrainingOptions, int, torch.device], Optional[Any]]


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def default_workers(gpus: int) -> int:
    """NVIDIA's 3 data workers per process, but never more than the cores each process has without CUDA."""
    return 3 if torch.cuda.is_available() else min(3, max(cpu_cores() // gpus, 1))


def cpu_processes_notice(gpus: int, cores: int) -> str:
    """What --gpus=N means without CUDA."""
    share = f'{cores // gpus} cores each' if cores >= gpus else f'{gpus / cores:g} processes per core'
    return (f'no CUDA device: --gpus={gpus} starts {gpus} CPU processes sharing {cores} cores ({share}); '
            f'--gpus=1 is usually faster on CPU')


def _process(rank: int, opts: TrainingOptions, world: int, init_file: str, metrics_for_run: MetricsForRun,
             external_stop: Any = None, parent_pid: int = 0) -> int:
    """One training process spawned by `launch` (or started by torchrun); errors end it with one line.
    Returns the exit code of a stop request (StopFlag.exit_code), 0 when the run finished."""
    stop = StopFlag(external_stop)   # first: a Ctrl-C from now on finishes the step and saves
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)   # blocked by `launch` while starting
    if external_stop is not None:
        distributed.stop_with_parent(parent_pid)
    if distributed.launched_by_torchrun():
        rank, local_rank = int(os.environ['RANK']), int(os.environ['LOCAL_RANK'])
    else:
        local_rank = rank
    try:
        distributed.init(rank, world, init_file)
        device = distributed.device_for(local_rank)
        if device.type == 'cpu':
            torch.set_num_threads(max(cpu_cores() // world, 1))   # processes share the cores, not each all of them
        metrics = metrics_for_run(opts, rank, device)
        tl.training_loop(opts, rank=rank, device=device, stop=stop, metrics=metrics)
        if distributed.launched_by_torchrun():
            distributed.barrier()   # then leave the group (finally) and end as a script ends
        else:
            distributed.end_spawned_rank()
        return stop.exit_code
    except EXPECTED as e:
        if rank == 0:
            if debug_enabled():
                traceback.print_exc()
            print(f'error: {describe(e)}', file=sys.stderr, flush=True)
        sys.exit(1)
    except KeyboardInterrupt:   # a Ctrl-C while the process starts, before its StopFlag hears it
        sys.exit(130)
    finally:
        distributed.shutdown()


def launch(opts: TrainingOptions, stop: StopFlag, metrics_for_run: MetricsForRun) -> int:
    """Train in this process, in `opts.gpus` spawned ones, or as a process of torchrun; returns the exit
    code: 0 for a finished run, 128 + the signal for one stopped with a snapshot (130: Ctrl-C), 1 for a
    spawned process that failed (it said why before it ended)."""
    if distributed.launched_by_torchrun():
        stop.restore()
        return _process(0, opts, int(os.environ['WORLD_SIZE']), '', metrics_for_run)
    if opts.gpus == 1:
        device = distributed.device_for(0)
        tl.training_loop(opts, device=device, stop=stop, metrics=metrics_for_run(opts, 0, device))
        return stop.exit_code
    context = torch.multiprocessing.get_context('spawn')
    external_stop = context.Event()
    with tempfile.TemporaryDirectory() as tmp:
        # Ctrl-C and SIGTERM are blocked while the children start (the signal mask survives exec) and
        # unblocked by each child once its StopFlag is set up, so a signal at any moment reaches every
        # process as one request to stop; none dies half-started. This process passes them on too (the
        # event): a terminal's Ctrl-C reaches the whole group, but `kill PID` (a scheduler, a cloud
        # preemption) only this one. A launcher killed outright takes the children with it (stop_with_parent).
        def forward(signum, frame):
            if stop.requested and signum == signal.SIGINT:   # a second Ctrl-C: every rank aborts too
                abort()
            stop.note(signum)
            external_stop.set()
        previous = {sig: signal.signal(sig, forward) for sig in STOP_SIGNALS}
        if stop.requested:   # a signal came while this process was setting up
            external_stop.set()
        try:
            signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
            try:
                processes = torch.multiprocessing.start_processes(
                    _process, nprocs=opts.gpus, join=False, start_method='spawn',
                    args=(opts, opts.gpus, os.path.join(tmp, 'init'), metrics_for_run, external_stop, os.getpid()))
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
            while not processes.join():
                pass
        except torch.multiprocessing.ProcessExitedException as e:
            return 130 if e.exit_code == 130 else 1   # the process said why before it ended
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            stop.restore()
    return stop.exit_code

"""Process groups for multi-GPU (NCCL) and multi-process CPU (gloo) training and metrics, and every
collective operation they use; each collective is a no-op in a single process (every rank must call it).

One process per device. `--gpus=N` on one machine spawns N processes that meet through a file in a
temporary directory; under `torchrun` the environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR)
describes the group instead. A single process never initialises torch.distributed at all.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
from typing import Any, NoReturn, Optional

import torch
import torch.distributed as dist


def launched_by_torchrun() -> bool:
    return 'RANK' in os.environ and 'WORLD_SIZE' in os.environ and 'LOCAL_RANK' in os.environ


def device_for(local_rank: int) -> torch.device:
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        return torch.device('cuda', local_rank)
    return torch.device('cpu')


def stop_with_parent(parent_pid: int) -> None:
    """Ask Linux to send this (spawned) process SIGTERM when its launcher dies, even by kill -9, so that no
    orphaned rank trains on (and writes into the run directory) unseen; the rank's StopFlag turns the signal
    into a snapshot and a clean exit. Elsewhere a no-op."""
    if not sys.platform.startswith('linux'):
        return
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:   # the launcher died before the request was made
        os.kill(os.getpid(), signal.SIGTERM)


def init(rank: int, world_size: int, init_file: Optional[str] = None) -> None:
    """Join the process group (no-op for a single process, or once joined)."""
    if world_size <= 1 or (dist.is_available() and dist.is_initialized()):
        return
    backend = 'nccl' if torch.cuda.is_available() else 'gloo'
    if launched_by_torchrun():
        dist.init_process_group(backend=backend)
    else:
        dist.init_process_group(backend=backend, init_method=f'file://{os.path.abspath(init_file)}',
                                rank=rank, world_size=world_size)


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _comm_device(reference: Optional[torch.Tensor] = None) -> torch.device:
    """Where a collective's tensors must be: NCCL moves CUDA tensors only, gloo CPU ones."""
    if dist.get_backend() != 'nccl':
        return torch.device('cpu')
    return reference.device if reference is not None else torch.device('cuda', torch.cuda.current_device())


def all_reduce_sum_(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks in place (the tensor must already be on the backend's device)."""
    if world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def sum_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks of a tensor on any device, as a new tensor on that device."""
    if world_size() <= 1:
        return tensor
    out = tensor.to(_comm_device(tensor)).clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out.to(tensor.device)


def mean_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """Mean of a (detached) statistic over ranks, so running averages see the whole global batch."""
    if world_size() <= 1:
        return tensor
    return sum_over_ranks(tensor.detach()) / world_size()


def any_rank(flag: bool) -> bool:
    """True on every rank when `flag` is true on any rank."""
    if world_size() <= 1:
        return bool(flag)
    tensor = torch.tensor([float(flag)], device=_comm_device())
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return bool(tensor.item() > 0)


def broadcast_float(value: float, reference: torch.device) -> float:
    """Rank 0's value, on every rank (`reference`: the device of this rank's work)."""
    if world_size() <= 1:
        return value
    t = torch.tensor([float(value)], dtype=torch.float64, device=reference)
    t = t.to(_comm_device(t))
    dist.broadcast(t, src=0)
    return float(t.item())


def agree(flag: bool, reference: torch.device) -> bool:
    """Rank 0's boolean, on every rank (e.g. "the cache file exists")."""
    return bool(broadcast_float(1.0 if flag else 0.0, reference))


def all_gather_object(value: Any) -> list:
    """`value` of every rank (picklable), as a list indexed by rank."""
    if world_size() <= 1:
        return [value]
    out = [None] * world_size()
    dist.all_gather_object(out, value)
    return out


def gather_rounds(rows: torch.Tensor, count: int, capacity: int) -> list[torch.Tensor]:
    """All ranks' batches of one round, in rank order, each cut to its valid `count` rows.

    `rows` holds at least `count` rows; it is padded to `capacity` so that every rank sends the same
    shape (a requirement of all_gather)."""
    rows = rows[:count]
    if world_size() <= 1:
        return [rows]
    device = _comm_device(rows)
    padded = torch.zeros([capacity, *rows.shape[1:]], dtype=rows.dtype, device=device)
    padded[:count] = rows.to(device)
    counts = torch.tensor([count], dtype=torch.int64, device=device)
    all_rows = [torch.empty_like(padded) for _ in range(world_size())]
    all_counts = [torch.empty_like(counts) for _ in range(world_size())]
    dist.all_gather(all_rows, padded)
    dist.all_gather(all_counts, counts)
    return [r[:int(c.item())].to(rows.device) for r, c in zip(all_rows, all_counts)]


def broadcast_module_(module: torch.nn.Module, src: int = 0) -> None:
    """Make every rank start from rank 0's parameters and buffers."""
    if world_size() <= 1:
        return
    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor.data, src=src)


def average_gradients_(params: list[torch.nn.Parameter]) -> None:
    """Mean of the gradients over ranks, flattened into one all-reduce; NaN/Inf are neutralised as NVIDIA does."""
    params = [p for p in params if p.grad is not None]
    if not params:
        return
    flat = torch.cat([p.grad.flatten() for p in params])
    if world_size() > 1:
        dist.all_reduce(flat)
        flat /= world_size()
    torch.nan_to_num(flat, nan=0, posinf=1e5, neginf=-1e5, out=flat)
    for p, g in zip(params, flat.split([p.numel() for p in params])):
        p.grad.copy_(g.reshape(p.shape))


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def shutdown() -> None:
    """Leave the process group (after an error too: no collective, a dead peer could not answer)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def end_spawned_rank() -> NoReturn:
    """End a process that `torch.multiprocessing` spawned as one rank, after its work finished cleanly.

    The ranks meet first, so that none leaves while another still needs it; then the process ends at
    once, exit status 0, leaving the process group, gloo's threads and the interpreter to the operating
    system. Tearing those down ourselves aborted a gloo rank now and then ("terminate called without an
    active exception", SIGABRT) after a run had finished and written everything, and the launcher then
    reported the whole job as failed. Callers close their files before; standard output is flushed here."""
    barrier()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)

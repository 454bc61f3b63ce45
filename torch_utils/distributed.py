"""Process groups for multi-GPU (NCCL) and multi-process CPU (gloo) training.

One process per device. `--gpus=N` on one machine spawns N processes that meet through a file in a
temporary directory; under `torchrun` the environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR)
describes the group instead. A single process never initialises torch.distributed at all.
"""
from __future__ import annotations

import os
import signal
import sys
from typing import Optional

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
    import ctypes
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:   # the launcher died before the request was made
        os.kill(os.getpid(), signal.SIGTERM)


def init(rank: int, world_size: int, init_file: Optional[str] = None) -> None:
    """Join the process group (no-op for a single process)."""
    if world_size <= 1:
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


def all_reduce_sum_(tensor: torch.Tensor) -> torch.Tensor:
    if world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def any_rank(flag: bool) -> bool:
    """True on every rank when `flag` is true on any rank (every rank must call it)."""
    if world_size() <= 1:
        return bool(flag)
    device = torch.device('cuda', torch.cuda.current_device()) if dist.get_backend() == 'nccl' else 'cpu'
    tensor = torch.tensor([float(flag)], device=device)   # NCCL reduces CUDA tensors only
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return bool(tensor.item() > 0)


def mean_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """Mean of a (detached) statistic over ranks, so running averages see the whole global batch."""
    if world_size() <= 1:
        return tensor
    tensor = tensor.detach().clone()
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor / world_size()


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
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()

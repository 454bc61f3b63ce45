"""The few collective operations the metrics need, each a no-op in a single process.

Work is split by *global batch index*: batch b goes to rank b mod R. After each round the ranks exchange
their batches and everyone appends them in global order, so the features (and the metric) do not
depend on how many processes computed them.
"""
from __future__ import annotations

import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def _comm_device(tensor: torch.Tensor) -> torch.device:
    # NCCL only moves CUDA tensors; gloo moves CPU ones.
    return tensor.device if dist.get_backend() == 'nccl' else torch.device('cpu')


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


def sum_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    if world_size() <= 1:
        return tensor
    device = _comm_device(tensor)
    out = tensor.to(device).clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out.to(tensor.device)


def broadcast_float(value: float, reference: torch.device) -> float:
    """Rank 0's value, on every rank."""
    if world_size() <= 1:
        return value
    t = torch.tensor([float(value)], dtype=torch.float64, device=reference)
    device = _comm_device(t)
    t = t.to(device)
    dist.broadcast(t, src=0)
    return float(t.item())


def agree(flag: bool, reference: torch.device) -> bool:
    """Rank 0's boolean, on every rank (e.g. "the cache file exists")."""
    return bool(broadcast_float(1.0 if flag else 0.0, reference))

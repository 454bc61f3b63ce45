"""Training statistics: per-tick means of reported values, reduced over ranks.

training.reporting writes them in NVIDIA's `stats.jsonl` format: `{"Loss/G/loss": {"num": n, "mean": m,
"std": s}, ..., "timestamp": t}`, so their plotting scripts read our runs too.
"""
from __future__ import annotations

import math
from collections import defaultdict

import torch

from torch_utils import distributed


class StatsCollector:
    """Accumulates count, sum and sum of squares per name on the device (no GPU sync per report)."""

    def __init__(self, device: torch.device):
        self.device = device
        self._acc: dict[str, torch.Tensor] = defaultdict(lambda: torch.zeros(3, dtype=torch.float64, device=device))

    def report(self, name: str, value) -> None:
        value = torch.as_tensor(value).detach().flatten().to(device=self.device, dtype=torch.float64)
        value = value[torch.isfinite(value)]
        self._acc[name] += torch.stack([torch.tensor(float(value.numel()), dtype=torch.float64, device=self.device),
                                        value.sum(), value.square().sum()])

    def collect(self) -> dict[str, dict[str, float]]:
        """Reduce over ranks, return {name: {num, mean, std}} and reset. Every rank must call it."""
        names = sorted(self._acc)
        if distributed.world_size() > 1:   # ranks may have reported different names: agree on the union first
            names = sorted(set().union(*distributed.all_gather_object(names)))
        if not names:
            return {}
        stacked = torch.stack([self._acc[name] for name in names])
        distributed.all_reduce_sum_(stacked)
        self._acc.clear()
        out = {}
        for name, (num, total, squares) in zip(names, stacked.tolist()):
            if num == 0:
                continue
            mean = total / num
            out[name] = dict(num=num, mean=mean, std=math.sqrt(max(squares / num - mean ** 2, 0)))
        return out


    def state_dict(self) -> dict[str, list[float]]:
        """This rank's running sums, for a snapshot taken in the middle of a tick."""
        return {name: acc.tolist() for name, acc in self._acc.items()}

    def load_state_dict(self, state: dict[str, list[float]]) -> None:
        self._acc.clear()
        for name, values in state.items():
            self._acc[name] = torch.tensor(values, dtype=torch.float64, device=self.device)

"""Replaying a function's GPU work from a CUDA graph.

At batch 1 a generator's forward is hundreds of small kernels, and a GPU spends most of its time waiting
for Python to launch them; replaying a captured graph launches them all at once. The ops are written
without host synchronisation for this (torch_utils/ops/cuda_kernels.py). A graph reads and writes fixed
memory: inputs are copied into it and the output copied out, and the parameters it reads must stay where
they were at capture (keep a GraphedFunction for one stretch of work on one model, not across `.to()`).
"""
from __future__ import annotations

import sys
from typing import Callable, Optional

import torch


class GraphedFunction:
    """fn(*tensors) -> tensor, run from a CUDA graph per input shape (captured at the first call with that
    shape, after `warmup` eager runs on a side stream, as CUDA requires). Same results as fn: the same
    kernels on the same data. CPU inputs, and shapes whose capture failed (one warning line), run eagerly."""

    def __init__(self, fn: Callable[..., torch.Tensor], warmup: int = 2):
        self.fn = fn
        self.warmup = warmup
        self.graphs: dict[tuple, Optional[tuple]] = {}   # input signature -> (inputs, graph, output) or None

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        if not all(isinstance(t, torch.Tensor) and t.device.type == 'cuda' for t in inputs):
            return self.fn(*inputs)
        key = tuple((tuple(t.shape), t.dtype, t.device) for t in inputs)
        if key not in self.graphs:
            self.graphs[key] = self._capture(inputs)
        entry = self.graphs[key]
        if entry is None:
            return self.fn(*inputs)
        static_inputs, graph, static_output = entry
        for static, t in zip(static_inputs, inputs):
            static.copy_(t)
        graph.replay()
        return static_output.clone()

    def _capture(self, inputs: tuple) -> Optional[tuple]:
        static_inputs = [t.clone() for t in inputs]
        side = torch.cuda.Stream(device=inputs[0].device)
        side.wait_stream(torch.cuda.current_stream(inputs[0].device))
        with torch.cuda.stream(side):
            for _ in range(self.warmup):   # (also makes every lazy choice: kernel builds, plans, autotuning)
                self.fn(*static_inputs)
        torch.cuda.current_stream(inputs[0].device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                static_output = self.fn(*static_inputs)
        except Exception as e:   # noqa: BLE001 - a step that cannot be captured: run eagerly
            first = (str(e).strip().splitlines() or [''])[0][:200]
            sys.stderr.write(f'stylegan3-clothing: CUDA graph capture failed, running eagerly ({type(e).__name__}: {first})\n')
            return None
        return static_inputs, graph, static_output

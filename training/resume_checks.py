"""Checking the optimizer and statistics state of a snapshot before an exact resume uses it.

A resume loads Adam's moments into the optimizers and the running tick sums into the statistics. Torch checks
neither beyond the number of parameters: a moment of the wrong shape or a sum that is not a number only
fails at the first step, after the run directory was tidied. So everything is checked here first, against the
snapshot's own networks; each function raises ValueError with what is wrong, for the caller to name the file.
(That no tensor views a shared, stride-0 or overlapping storage is already ensured when the file is read.)
"""
from __future__ import annotations

import math
from typing import Any, Optional

import torch

_ADAM_MOMENTS = ('exp_avg', 'exp_avg_sq')
_GROUP_NUMBERS = ('lr', 'eps', 'weight_decay')


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_adam_state(state: Any, params: list[torch.nn.Parameter], what: str) -> None:
    """An Adam state_dict that fits `params` (the network's parameters in optimizer order)."""
    if not isinstance(state, dict) or not isinstance(state.get('state'), dict) \
            or not isinstance(state.get('param_groups'), list) or len(state['param_groups']) != 1:
        raise ValueError(f'{what}: not an optimizer state of one parameter group')
    group = state['param_groups'][0]
    if not isinstance(group, dict) or group.get('params') != list(range(len(params))):
        raise ValueError(f'{what}: its parameter group does not list the {len(params)} parameters of the network')
    betas = group.get('betas')
    if not all(_finite_number(group.get(k)) and group[k] >= 0 for k in _GROUP_NUMBERS) \
            or not (isinstance(betas, (tuple, list)) and len(betas) == 2 and all(_finite_number(b) for b in betas)):
        raise ValueError(f'{what}: its learning rate, betas, eps or weight decay are not finite numbers')
    for index, moments in state['state'].items():
        if not isinstance(index, int) or not 0 <= index < len(params) or not isinstance(moments, dict):
            raise ValueError(f'{what}: state of parameter {index!r:.40}, which the network does not have')
        if set(moments) != {'step', *_ADAM_MOMENTS}:
            raise ValueError(f'{what}: parameter {index} has state {sorted(map(str, moments))}, expected step, '
                             f'exp_avg and exp_avg_sq')
        step = moments['step']
        step = float(step) if isinstance(step, torch.Tensor) and step.numel() == 1 and step.is_floating_point() else step
        if not _finite_number(step) or step < 0:
            raise ValueError(f'{what}: parameter {index} has step {moments["step"]!r:.40}')
        param = params[index]
        for key in _ADAM_MOMENTS:
            value = moments[key]
            if not isinstance(value, torch.Tensor) or value.shape != param.shape or value.dtype != param.dtype:
                shape = list(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                raise ValueError(f'{what}: {key} of parameter {index} is {shape}, the parameter '
                                 f'{list(param.shape)} {param.dtype}')
            if not bool(torch.isfinite(value).all()) or (key == 'exp_avg_sq' and bool((value < 0).any())):
                raise ValueError(f'{what}: {key} of parameter {index} holds NaN, infinite or negative values')


def check_tick_stats(stats: Any, what: str) -> None:
    """A StatsCollector state: name -> [count, sum, sum of squares], finite, count >= 0."""
    if not isinstance(stats, dict):
        raise ValueError(f'{what}: not a dict')
    for name, values in stats.items():
        if not isinstance(name, str) or not isinstance(values, list) or len(values) != 3 \
                or not all(_finite_number(v) for v in values) or values[0] < 0:
            raise ValueError(f'{what}: {str(name)[:60]!r} is {values!r:.60}, not [count, sum, sum of squares]')


def check_ada_state(state: Any, what: str) -> None:
    """An AdaptiveP state (None when the run had no ADA). last_rt is NaN until the first adjustment."""
    if state is None:
        return
    numbers = ('sign_sum', 'count', 'target', 'speed_kimg')
    if not isinstance(state, dict) or not isinstance(state.get('batches'), int) or state['batches'] < 0 \
            or not all(_finite_number(state.get(k)) for k in numbers) or state['count'] < 0 \
            or not isinstance(state.get('last_rt'), (int, float)):
        raise ValueError(f'{what}: malformed')


def check_scalar_tensor(value: Any, what: str) -> None:
    if not isinstance(value, torch.Tensor) or value.numel() != 1 or not value.is_floating_point() \
            or not bool(torch.isfinite(value).all()):
        raise ValueError(f'{what}: not a finite number')


def check_resumed_values(ts: dict, stats: list, data: Optional[dict]) -> None:
    """Everything of a training state that the optimizers, the statistics, ADA and the path length penalty
    take as is; with the snapshot's `data`, the moments against its networks."""
    for rank, rank_stats in enumerate(stats):
        check_tick_stats(rank_stats, f'tick statistics of process {rank}')
    check_ada_state(ts.get('ada'), 'ADA state')
    check_scalar_tensor(ts.get('pl_mean'), 'pl_mean')
    for key in ('G', 'D') if data is not None else ():
        if not isinstance(data.get(key), torch.nn.Module):
            raise ValueError(f'the snapshot has no {key} to continue')
        check_adam_state(ts['optimizers'][key], list(data[key].parameters()), f'optimizer of {key}')

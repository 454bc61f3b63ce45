"""Quality metrics with NVIDIA's names and meanings (FID, KID, precision/recall, PPL, EQ-T/EQ-R, IS, LS).

`metrics.api.calc_metric(name, G, data=...)` computes one and `report_metric` appends it to a run's
`metric-<name>.jsonl`; names are parsed by `metrics.registry` (any sample count: fid2k_full, ...).

What every module shares lives here: the package's errors, one line each naming what is wrong and what to do.
"""
from torch_utils.cli import UserError


class MetricError(UserError):
    """A metric that cannot run with the given generator, dataset or options."""


class DetectorError(MetricError):
    """A feature detector that is missing, unsafe to load or unreadable."""

"""Quality metrics with NVIDIA's names and meanings (FID, KID, precision/recall, PPL, EQ-T/EQ-R, IS, LS).

`calc_metric(name, G, data=...)` computes one; `report_metric` appends it to a run's
`metric-<name>.jsonl`; names are parsed by `metrics.registry` (any sample count: fid2k_full, ...).
"""
from .api import calc_metric, report_metric
from .errors import DetectorError, MetricError
from .registry import is_valid_metric, list_valid_metrics

__all__ = ['calc_metric', 'report_metric', 'is_valid_metric', 'list_valid_metrics', 'MetricError', 'DetectorError']

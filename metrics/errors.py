"""Errors that stop a metric; each message is one line naming what is wrong and what to do."""
from torch_utils.cli import UserError


class MetricError(UserError):
    """A metric that cannot run with the given generator, dataset or options."""


class DetectorError(MetricError):
    """A feature detector that is missing, unsafe to load or unreadable."""

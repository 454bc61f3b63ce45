"""The one error type of the dataset code, in a module of its own so that dataset_tool.py never imports torch."""
from torch_utils.cli import UserError


class DatasetError(UserError):
    """A dataset or source that cannot be used; the message names the file and the problem, on one line."""

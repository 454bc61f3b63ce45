"""Training images: reading every source kind, converting it into a training set, and the set itself.

  sources.py            one reader per source kind dataset_tool.py accepts (folders, zips, idx, CIFAR-10,
                        TFRecords via tfrecord.py, procedural garments from synthetic_garments.py)
  convert.py            any source into NVIDIA's zip/folder layout (dataset_tool.py), and ensure_dataset
  dataset.py            ImageFolderDataset: the training set, read lazily (the one module here that needs torch)
  image_io.py           decoding, fitting and encoding one image, within header limits
  colour.py             colours as the options spell them (--background), fitted to an image's channels
  dataset_json.py       dataset.json, parsed within limits
  member_limits.py      how many bytes one file of a dataset may hold

What every module shares lives here: the package's error type. It is defined in this file rather than in
dataset.py so that dataset_tool.py never imports torch.
"""
from torch_utils.cli import UserError


class DatasetError(UserError):
    """A dataset or source that cannot be used; the message names the file and the problem, on one line."""

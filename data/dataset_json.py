"""dataset.json, as the training set and dataset_tool.py read it: parsed within size and nesting limits, and its
per-file entries and labels checked before anything is built from them.

    {"labels": [["00000/img00000000.png", 3], ...] or null,
     "attributes": [["00000/img00000000.png", {...}], ...], "class_names": ["t-shirt", ...]}

A label is a class index (0 <= index < MAX_LABEL_DIM, and below the number of class names where the file
names its classes) or a list of finite numbers; a class index of 10^9 would otherwise ask the networks for
a 10^9-wide embedding.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np

from torch_utils import safe_json

from . import DatasetError

MAX_LABEL_DIM = 10_000   # classes, or numbers in a label vector (ImageNet has 1,000 classes)


def parse_dataset_json(raw: bytes, origin: str) -> dict:
    """The object in a dataset.json's bytes, or DatasetError naming `origin`."""
    try:
        meta = safe_json.loads(raw)
    except ValueError as e:
        raise DatasetError(f'{origin}: not valid JSON ({e})') from None
    if not isinstance(meta, dict):
        raise DatasetError(f'{origin}: expected an object with a "labels" key')
    names = meta.get('class_names')
    if names is not None and (not isinstance(names, list) or len(names) > MAX_LABEL_DIM
                              or not all(isinstance(n, str) for n in names)):
        raise DatasetError(f'{origin}: "class_names" must be a list of at most {MAX_LABEL_DIM} strings')
    return meta


def class_names(meta: dict) -> Optional[list]:
    names = meta.get('class_names')
    return list(names) if names is not None else None


def entries_by_name(meta: dict, key: str, origin: str) -> Optional[dict]:
    """{file name: value} of a "key": [[file name, value], ...] list; None where the key is absent or null."""
    entries = meta.get(key)
    if entries is None:
        return None
    if not isinstance(entries, list) or not all(isinstance(e, list) and len(e) == 2 and isinstance(e[0], str)
                                                for e in entries):
        raise DatasetError(f'{origin}: "{key}" must be a list of [file name, value] pairs')
    out = {name.replace('\\', '/'): value for name, value in entries}
    if key == 'labels':
        limit = len(meta['class_names']) if meta.get('class_names') else MAX_LABEL_DIM
        for name, value in out.items():
            check_label(value, f'{origin}: label of {name}', limit)
    return out


def _is_index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_label(value: Any, what: str, classes: int = MAX_LABEL_DIM) -> None:
    """A class index below `classes`, or a list of at most MAX_LABEL_DIM finite numbers."""
    if _is_index(value):
        if not 0 <= value < classes:
            raise DatasetError(f'{what} is class {value}, outside 0..{classes - 1}')
        return
    vector = value if isinstance(value, list) else [value]
    if not 0 < len(vector) <= MAX_LABEL_DIM or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                        and math.isfinite(v) for v in vector):
        raise DatasetError(f'{what} is {str(value)[:60]}: not a class index or a list of at most '
                           f'{MAX_LABEL_DIM} finite numbers (NaN and infinity are refused)')


def label_array(values: list, origin: str) -> np.ndarray:
    """Checked labels (see check_label) of every image: int64 class indices, or float32 [N, dim] vectors."""
    if all(_is_index(v) for v in values):
        return np.asarray(values, dtype=np.int64)
    if any(_is_index(v) for v in values) and any(isinstance(v, list) for v in values):
        raise DatasetError(f'{origin}: labels mix class indices and vectors')
    rows = [v if isinstance(v, list) else [v] for v in values]
    if len({len(r) for r in rows}) > 1:
        raise DatasetError(f'{origin}: label vectors have different lengths')
    return np.asarray(rows, dtype=np.float32).reshape(len(values), -1)

"""Constructor-kwargs recording, so that every network can be rebuilt from (class, kwargs, tensors).

NVIDIA's snapshots rebuild classes by executing source code stored in the file. Ours never do:
a network is described by its family, its constructor kwargs (plain Python data) and its state
dict, and the loader builds the class that it imports itself.
"""
from __future__ import annotations

import copy
import functools
import inspect
from typing import Any

import numpy as np


def plain(value: Any) -> Any:
    """Kwargs as plain Python data (dict/list/tuple/str/number/None), e.g. EasyDicts and NumPy scalars unwrapped."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def records_init_kwargs(cls):
    """Class decorator: instances get `init_kwargs`, the keyword arguments they were built with."""
    init = cls.__init__
    signature = inspect.signature(init)

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        recorded = {}
        for name, value in list(bound.arguments.items())[1:]:
            if signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
                recorded.update(value)
            else:
                recorded[name] = value
        init(self, *args, **kwargs)
        self.init_kwargs = plain(copy.deepcopy(recorded))

    cls.__init__ = __init__
    return cls

"""Name -> data module class (the ``data`` config group's ``name``)."""

from __future__ import annotations

import inspect

from ..errors import ConfigError
from ..registry import Registry

_DATASETS: Registry[type] = Registry("dataset")
register_dataset = _DATASETS.register
dataset_names = _DATASETS.names


def build_datamodule(name: str, **kwargs):
    """Instantiate data module ``name``; unknown names or keys are errors listing the valid ones."""
    cls = _DATASETS.get(name)
    accepted: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" in klass.__dict__:
            accepted |= {p for p in inspect.signature(klass.__init__).parameters if p not in ("self", "kwargs")}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ConfigError(f"data {name!r} takes no key {', '.join(unknown)}; valid keys: {', '.join(sorted(accepted))}")
    return cls(**kwargs)

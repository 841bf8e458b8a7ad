"""Name -> data module class (the ``data`` config group's ``name``)."""
from __future__ import annotations

import inspect

from ..errors import ConfigError

_DATASETS: dict[str, type] = {}


def register_dataset(name: str):
    def deco(cls):
        cls.name = name
        _DATASETS[name] = cls
        return cls

    return deco


def dataset_names() -> list[str]:
    return sorted(_DATASETS)


def build_datamodule(name: str, **kwargs):
    """Instantiate data module ``name``; unknown names or keys are errors listing the valid ones."""
    if name not in _DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; valid datasets: {', '.join(dataset_names())}")
    cls = _DATASETS[name]
    accepted: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" in klass.__dict__:
            accepted |= {p for p in inspect.signature(klass.__init__).parameters if p not in ("self", "kwargs")}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ConfigError(f"data {name!r} takes no key {', '.join(unknown)}; valid keys: {', '.join(sorted(accepted))}")
    return cls(**kwargs)

"""Name -> distillation method (the ``distill`` config group)."""
from __future__ import annotations

from ..errors import ConfigError

_METHODS: dict[str, type] = {}


def register_distiller(name: str):
    def deco(cls):
        cls.name = name
        _METHODS[name] = cls
        return cls

    return deco


def distiller_names() -> list[str]:
    return sorted(_METHODS)


def build_distiller(name: str, **kwargs):
    if name not in _METHODS:
        raise ConfigError(f"unknown distillation {name!r}; valid: {', '.join(distiller_names())}")
    return _METHODS[name](**kwargs)

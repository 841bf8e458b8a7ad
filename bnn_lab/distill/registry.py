"""Name -> distillation method (the ``distill`` config group)."""

from __future__ import annotations

from ..registry import Registry

_METHODS: Registry[type] = Registry("distillation", "distillations")
register_distiller = _METHODS.register
distiller_names = _METHODS.names


def build_distiller(name: str, **kwargs):
    return _METHODS.get(name)(**kwargs)

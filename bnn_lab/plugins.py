"""``plugins``: Python modules imported before a run is built, so that estimators, loss terms,
optimizers, scales... registered in them (``@register_...("name")``) can be named in the
configuration without a file inside bnn_lab (docs/extending.md)."""

from __future__ import annotations

import importlib
from collections.abc import Iterable

from .errors import ConfigError


def load_plugins(modules: Iterable[str] | None) -> None:
    for name in modules or ():
        try:
            importlib.import_module(str(name))
        except ImportError as exc:
            raise ConfigError(
                f"plugin module {name!r} cannot be imported ({exc}); put its folder on PYTHONPATH or install it"
            ) from exc

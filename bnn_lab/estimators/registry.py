"""Name -> estimator class registry, in the style of timm's ``register_model``."""
from __future__ import annotations

import inspect
from typing import Callable

from torch import nn

from ..errors import ConfigError

_REGISTRY: dict[str, type[nn.Module]] = {}


def register(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    def deco(cls: type[nn.Module]) -> type[nn.Module]:
        if name in _REGISTRY:
            raise KeyError(f"estimator {name!r} is registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def names() -> list[str]:
    """The registered estimator names, sorted."""
    return sorted(_REGISTRY)


def get(name: str) -> type[nn.Module]:
    if name not in _REGISTRY:
        raise ConfigError(f"unknown estimator {name!r}; valid estimators: {', '.join(names())}")
    return _REGISTRY[name]


def build(name: str, **kwargs) -> nn.Module:
    """Build estimator ``name``. Unknown keyword arguments are an error that lists the valid ones.

    Context keywords that the surgery pass supplies (``features``, ``channels``, ``role``) are
    passed on only to estimators whose constructor takes them.
    """
    cls = get(name)
    params = inspect.signature(cls.__init__).parameters
    context = {"features", "channels", "role"}
    accepted = {k for k in params if k != "self"}
    kwargs = {k: v for k, v in kwargs.items() if k in accepted or k not in context}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        valid = sorted(accepted - context)
        raise ConfigError(
            f"estimator {name!r} takes no argument {', '.join(map(repr, unknown))}; "
            f"valid arguments: {', '.join(valid) or '(none)'}"
        )
    return cls(**kwargs)

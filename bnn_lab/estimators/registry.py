"""Name -> estimator class registry, in the style of timm's ``register_model``."""

from __future__ import annotations

import inspect

from torch import nn

from ..errors import ConfigError
from ..registry import Registry

_REGISTRY: Registry[type[nn.Module]] = Registry("estimator")
register = _REGISTRY.register
names = _REGISTRY.names
get = _REGISTRY.get


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

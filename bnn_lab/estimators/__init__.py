"""Sign-gradient estimators: ``build(name, **kwargs)``, ``names()``.

Each estimator lives in its own module and registers itself by name.
"""
from .base import SignEstimator, binary_sign
from .registry import build, get, names, register
from . import ste, fda  # noqa: F401  (registration)

__all__ = ["SignEstimator", "binary_sign", "build", "get", "names", "register"]

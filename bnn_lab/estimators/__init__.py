"""Sign-gradient estimators: ``build(name, **kwargs)``, ``names()``.

Each estimator lives in its own module and registers itself by name; the formulas are in
each module's docstring and in docs/methods.md, section 1.
"""

from . import (  # noqa: F401  (registration)
    adabin,
    approx,
    biper,
    dorefa,
    dte,
    ede,
    fda,
    mlp,
    progressive,
    recu,
    rsign,
    ste,
    swish,
    ternary,
)
from .base import Quantizer, SignEstimator, binary_sign
from .registry import build, get, names, register

__all__ = ["Quantizer", "SignEstimator", "binary_sign", "build", "get", "names", "register"]

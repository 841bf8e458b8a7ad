"""Normalization of the latent weights before their sign (``binarize.weight_norm``).

A binary layer with a weight normalization N binarizes N(W) instead of W and multiplies the
result by N's per-output-channel factor s:

    W_b = estimator(N(W)) * s(W)

- ``none`` (default): no normalization, W_b = estimator(W).
- ``imb``: DIR-Net's information maximizing binarization (``imb_weight_norm.py``).

A normalization is a module with ``forward(weight) -> N(weight)`` (differentiable: the
estimator's gradient flows back through it) and ``packed_scale(weight)`` -> the detached
factor s per output channel, or None for 1. The packed export binarizes N(W) with the layer's
estimator and folds s into the packed layer's per-channel scale (``bnn_lab/export/pack.py``);
a normalization whose factor is not per output channel raises
:class:`bnn_lab.errors.NoPackedForm` there. A new one is a module registered with
``@register_weight_norm(name)`` in its own file, imported by ``bnn_lab/layers/__init__.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from ..registry import Registry

WEIGHT_NORMS: Registry = Registry("binarize.weight_norm", "weight normalizations")
register_weight_norm = WEIGHT_NORMS.register
weight_norm_names = WEIGHT_NORMS.names


def build_weight_norm(spec: str | Mapping[str, Any] | None, layer: nn.Module) -> nn.Module | None:
    """The normalization module for a Conv2d / Linear ``layer`` (None for ``none``); ``spec`` is a
    name or ``{name, <options>}`` (the options go to its constructor after the layer)."""
    if spec is None:
        return None
    options = dict(spec) if isinstance(spec, Mapping) else {"name": spec}
    return WEIGHT_NORMS.build(options.pop("name"), layer, **options)


register_weight_norm("none")(lambda layer: None)

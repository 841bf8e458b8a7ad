"""Normalization of the latent weights before their sign (``binarize.weight_norm``).

A binary layer with a weight normalization N binarizes N(W) instead of W and multiplies the
result by N's per-output-channel factor s:

    W_b = estimator(N(W)) * s(W)

- ``none`` (default): no normalization, W_b = estimator(W).
- ``imb``: DIR-Net's information maximizing binarization (``imb_weight_norm.py``).

A normalization is a :class:`WeightNorm`: ``forward(weight) -> N(weight)`` (differentiable: the
estimator's gradient flows back through it) and ``packed_scale(weight)`` -> the detached
factor s per output channel, or None for 1 (the default). The packed export binarizes N(W) with the layer's
estimator and folds s into the packed layer's per-channel scale (``bnn_lab/export/pack.py``);
a normalization whose factor is not per output channel raises
:class:`bnn_lab.errors.NoPackedForm` there. A new one subclasses :class:`WeightNorm`, is
registered with ``@register_weight_norm(name)`` in its own file and imported by
``bnn_lab/layers/__init__.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from ..registry import Registry

WEIGHT_NORMS: Registry = Registry("binarize.weight_norm", "weight normalizations")
register_weight_norm = WEIGHT_NORMS.register
weight_norm_names = WEIGHT_NORMS.names


class WeightNorm(nn.Module):
    """Base of the weight normalizations: ``forward(weight)`` returns N(weight) (abstract);
    ``packed_scale(weight)`` the detached per-output-channel factor s, None for 1 (the default)."""

    def packed_scale(self, weight: torch.Tensor) -> torch.Tensor | None:
        return None


def build_weight_norm(spec: str | Mapping[str, Any] | None, layer: nn.Module) -> WeightNorm | None:
    """The normalization module for a Conv2d / Linear ``layer`` (None for ``none``); ``spec`` is a
    name or ``{name, <options>}`` (the options go to its constructor after the layer)."""
    if spec is None:
        return None
    options = dict(spec) if isinstance(spec, Mapping) else {"name": spec}
    name = options.pop("name")
    norm = WEIGHT_NORMS.build(name, layer, **options)
    if norm is not None and not isinstance(norm, WeightNorm):
        raise ConfigError(
            f"weight normalization {name!r} built a {type(norm).__name__}: it subclasses bnn_lab.layers.WeightNorm"
        )
    return norm


register_weight_norm("none")(lambda layer: None)

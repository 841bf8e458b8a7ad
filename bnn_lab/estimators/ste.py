"""Straight-through estimators.

- ``ste``: clipped STE of BinaryNet (Hubara et al. 2016), g(x) = 1[|x| <= clip]; the
  backward is aten's hardtanh backward (one fused pass) with bounds just above the clip.
- ``identity``: plain STE (Bengio et al. 2013), g(x) = 1; the backward hands dy through
  and keeps nothing from the forward pass.
"""
from __future__ import annotations

import torch

from .base import SignEstimator, clipped_vjp, inclusive_bounds
from .registry import register


@register("ste")
class STE(SignEstimator):
    vjp_fn = staticmethod(clipped_vjp)

    def __init__(self, clip: float = 1.0) -> None:
        super().__init__()
        self.clip = float(clip)
        self.bounds = inclusive_bounds(self.clip)

    def surrogate(self, x: torch.Tensor):
        return self.vjp, (self.bounds[x.dtype],)

    def extra_repr(self) -> str:
        return f"clip={self.clip}"


@register("identity")
class Identity(SignEstimator):
    def surrogate(self, x: torch.Tensor):
        return None, ()

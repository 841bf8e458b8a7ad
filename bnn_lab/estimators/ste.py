"""Straight-through estimators.

- ``ste``: clipped STE of BinaryNet (Hubara et al. 2016), g(x) = 1[|x| <= clip]; the
  backward is aten's hardtanh backward (one fused pass) with bounds just above the clip.
  When x comes straight out of a hardtanh whose range lies inside the clip (the binary
  nets' activation before every binary conv), |x| <= clip holds everywhere, the mask is all
  ones, and the backward hands dy through without keeping x (:func:`bounded_by`).
- ``identity``: plain STE (Bengio et al. 2013), g(x) = 1; the backward hands dy through
  and keeps nothing from the forward pass.
"""

from __future__ import annotations

import torch

from .base import SignEstimator, clipped_vjp, inclusive_bounds
from .registry import register


def bounded_by(x: torch.Tensor, clip: float) -> bool:
    """True when x is the output of a hardtanh with range inside [-clip, clip], read from its
    autograd node (a leaf, any other op, or a graph being compiled: False)."""
    if torch.compiler.is_compiling():  # dynamo cannot read grad_fn
        return False
    node = x.grad_fn
    if node is None or not type(node).__name__.startswith("HardtanhBackward"):
        return False
    return -clip <= float(node._saved_min_val) and float(node._saved_max_val) <= clip


@register("ste")
class STE(SignEstimator):
    vjp_fn = staticmethod(clipped_vjp)

    def __init__(self, clip: float = 1.0) -> None:
        super().__init__()
        self.clip = float(clip)
        self.bounds = inclusive_bounds(self.clip)

    def surrogate(self, x: torch.Tensor):
        if bounded_by(x, self.clip):
            return None, ()
        return self.vjp, (self.bounds[x.dtype],)

    def extra_repr(self) -> str:
        return f"clip={self.clip}"


@register("identity")
class Identity(SignEstimator):
    def surrogate(self, x: torch.Tensor):
        return None, ()

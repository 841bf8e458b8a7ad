"""ApproxSign (Bi-Real Net, Liu et al. 2018): the derivative of the piecewise quadratic
that approximates sign, g(x) = (2 - 2|x|) * 1[|x| <= 1] = 2 relu(1 - |x|)."""

from __future__ import annotations

import torch

from .base import SignEstimator, compute_dtype
from .registry import register


def approx_vjp(dy: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """dy * 2 relu(1 - |x|): the relu is the clip (zero at and beyond |x| = 1), every step but
    the first in place (float32 at least, like every formula)."""
    return x.to(compute_dtype(x)).abs().neg_().add_(1).clamp_min_(0).mul_(dy).mul_(2)


@register("approx")
class ApproxSign(SignEstimator):
    """``fused``: the backward through :mod:`.fusion` (one compiled loop instead of five passes)."""

    vjp_fn = staticmethod(approx_vjp)

    def surrogate(self, x: torch.Tensor):
        return self.vjp, ()

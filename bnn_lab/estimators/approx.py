"""ApproxSign (Bi-Real Net, Liu et al. 2018): the derivative of the piecewise quadratic
that approximates sign, g(x) = (2 - 2|x|) * 1[|x| <= 1]."""
from __future__ import annotations

import torch

from .base import SignEstimator
from .registry import register


@register("approx")
class ApproxSign(SignEstimator):
    def grad(self, x: torch.Tensor) -> torch.Tensor:
        return (2 - 2 * x.abs()).clamp_min(0)

"""SignSwish (BNN+, Darabi et al. 2018): the derivative of 2 sigmoid(beta x)(1 + beta x
(1 - sigmoid(beta x))) - 1,

    g(x) = beta (2 - beta x tanh(beta x / 2)) / (1 + cosh(beta x))
         = 2 beta s (1 - s) (2 - beta x (2 s - 1)),   s = sigmoid(beta x).

The backward uses the second form: one transcendental (the sigmoid) instead of tanh and
cosh, no overflow for large |x| (cosh overflows near |beta x| = 89 in float32; the sigmoid
form tends to 0 like the first one), and aten's fused sigmoid backward for s (1 - s).
"""

from __future__ import annotations

import torch

from .base import SignEstimator, compute_dtype
from .registry import register


def swish_vjp(dy: torch.Tensor, x: torch.Tensor, beta: float) -> torch.Tensor:
    z = x.to(compute_dtype(x)) * beta
    s = torch.sigmoid(z)
    bracket = s.mul(2).sub_(1).mul_(z).neg_().add_(2)  # 2 - z tanh(z / 2)
    return torch.ops.aten.sigmoid_backward(bracket, s).mul_(dy).mul_(2 * beta)


@register("swish")
class SignSwish(SignEstimator):
    """``fused``: the backward through :mod:`.fusion` (one compiled loop)."""

    vjp_fn = staticmethod(swish_vjp)

    def __init__(self, beta: float = 5.0, fused: bool = False) -> None:
        super().__init__(fused=fused)
        self.beta = float(beta)

    def surrogate(self, x: torch.Tensor):
        return self.vjp, (self.beta,)

    def extra_repr(self) -> str:
        return f"beta={self.beta}"

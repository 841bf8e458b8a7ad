"""SignSwish (BNN+, Darabi et al. 2018): the derivative of 2 sigmoid(beta x)(1 + beta x
(1 - sigmoid(beta x))) - 1,

    g(x) = beta (2 - beta x tanh(beta x / 2)) / (1 + cosh(beta x)).
"""
from __future__ import annotations

import torch

from .base import SignEstimator
from .registry import register


@register("swish")
class SignSwish(SignEstimator):
    def __init__(self, beta: float = 5.0) -> None:
        super().__init__()
        self.beta = float(beta)

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        b = self.beta
        # cosh overflows to inf for |b x| > ~710 in float64 (~89 in float32): the limit is 0
        return b * (2 - b * x * torch.tanh(b * x / 2)) / (1 + torch.cosh(b * x))

    def extra_repr(self) -> str:
        return f"beta={self.beta}"

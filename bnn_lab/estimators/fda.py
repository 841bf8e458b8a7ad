"""FDA: Fourier frequency-domain approximation of sign (Xu et al., NeurIPS 2021, FDA-BNN).

The square wave equals sign(x) on one period and has the Fourier series
(4/pi) sum_i sin((2i+1) w x) / (2i+1); its derivative, truncated to n terms, is the
surrogate gradient

    g(x) = (4 w / pi) * sum_{i=0}^{n-1} cos((2i+1) w x),   zero where |x| > 1,

with n = terms_start + floor((terms_end - terms_start) * p) growing with the training
progress p in [0, 1].

Noise adaptation (``noise=True``): a small module e(x) = fc2(relu(fc1(x))) + 0.1 sin(x)
(fc1 shrinks the feature dimension by 64, no biases) learns the residual between sign and
its truncated series. During training the output is sign(x) + alpha(p) * e(x) with
alpha(p) = alpha0 * (1 + cos(pi p)) / 2 decaying from alpha0 = 0.1 to 0; in ``eval()`` the
output is exactly +-1. The module needs the feature size at construction (so its
parameters exist before the optimizer is built); the surgery pass provides ``features``
for weight binarizers (one row per output channel, as in the paper's weight binarization).
Without ``features`` (activation binarizers) no noise module is created and only the
Fourier gradient is used.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .base import SignEstimator, binary_sign
from .registry import register


class NoiseAdaptation(nn.Module):
    """e(x) = fc2(relu(fc1(x))) + 0.1 sin(x) over the last dimension."""

    def __init__(self, features: int, reduction: int = 64) -> None:
        super().__init__()
        hidden = max(features // reduction, 1)
        self.fc1 = nn.Linear(features, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, features, bias=False)
        nn.init.zeros_(self.fc2.weight)  # starts as the pure 0.1 sin(x) term

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x))) + 0.1 * torch.sin(x)


@register("fda")
class FDA(SignEstimator):
    def __init__(
        self,
        terms_start: int = 9,
        terms_end: int = 18,
        omega: float = 0.1,
        noise: bool = True,
        alpha: float = 0.1,
        features: int | None = None,
    ) -> None:
        super().__init__()
        if terms_start < 1 or terms_end < terms_start:
            raise ValueError("fda needs 1 <= terms_start <= terms_end")
        self.terms_start, self.terms_end = int(terms_start), int(terms_end)
        self.omega, self.alpha0 = float(omega), float(alpha)
        self.noise = NoiseAdaptation(features) if (noise and features) else None

    @property
    def terms(self) -> int:
        p = float(self.progress)
        return self.terms_start + math.floor((self.terms_end - self.terms_start) * p)

    @property
    def alpha(self) -> float:
        return self.alpha0 * 0.5 * (1.0 + math.cos(math.pi * float(self.progress)))

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        k = torch.arange(self.terms, device=x.device, dtype=x.dtype) * 2 + 1
        series = torch.cos(x.unsqueeze(-1) * (k * self.omega)).sum(-1)
        return (4 * self.omega / math.pi) * series * (x.abs() <= 1).to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        if self.noise is not None and self.training and self.alpha > 0:
            rows = x.reshape(x.shape[0], -1)
            out = out + self.alpha * self.noise(rows).reshape(x.shape)
        return out

    def extra_repr(self) -> str:
        return f"terms={self.terms}, omega={self.omega}, noise={self.noise is not None}"


__all__ = ["FDA", "NoiseAdaptation", "binary_sign"]

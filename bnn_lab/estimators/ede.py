"""EDE, the error-decay estimator of IR-Net (Qin et al. 2020).

    t = t_min * (t_max / t_min) ** p,   k = max(1 / t, 1),   g(x) = k t (1 - tanh(t x)^2)

with p in [0, 1] the training progress: a wide identity-like gradient early (updating
ability), approaching the true sign later (accuracy).
"""
from __future__ import annotations

import torch

from .base import SignEstimator
from .registry import register


@register("ede")
class EDE(SignEstimator):
    def __init__(self, t_min: float = 0.1, t_max: float = 10.0) -> None:
        super().__init__()
        if not 0 < t_min <= t_max:
            raise ValueError("ede needs 0 < t_min <= t_max")
        self.t_min, self.t_max = float(t_min), float(t_max)

    def tk(self) -> tuple[float, float]:
        t = self.t_min * (self.t_max / self.t_min) ** float(self.progress)
        return t, max(1.0 / t, 1.0)

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        t, k = self.tk()
        return k * t * (1 - torch.tanh(t * x) ** 2)

    def extra_repr(self) -> str:
        t, k = self.tk()
        return f"t={t:.3f}, k={k:.3f}"

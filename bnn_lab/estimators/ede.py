"""EDE, the error-decay estimator of IR-Net (Qin et al. 2020).

    t = t_min * (t_max / t_min) ** p,   k = max(1 / t, 1),   g(x) = k t (1 - tanh(t x)^2)

with p in [0, 1] the training progress: a wide identity-like gradient early (updating
ability), approaching the true sign later (accuracy). The backward computes tanh(t x) once
and lets aten's fused tanh backward form dy (1 - tanh^2).
"""

from __future__ import annotations

import torch

from .base import SignEstimator, compute_dtype
from .registry import register


def tanh_vjp(dy: torch.Tensor, x: torch.Tensor, t: float, kt: float) -> torch.Tensor:
    """dy * k t (1 - tanh(t x)^2), with ``kt`` = k t (shared with DTE)."""
    y = torch.tanh(x.to(compute_dtype(x)) * t)
    return torch.ops.aten.tanh_backward(dy.to(y.dtype), y).mul_(kt)


class TanhSurrogate(SignEstimator):
    """g(x) = k t (1 - tanh(t x)^2) with ``t`` and ``k`` set by the subclass's ``schedule``
    (EDE here, DTE in dte.py); ``fused``: the backward through :mod:`.fusion` (one compiled
    loop)."""

    vjp_fn = staticmethod(tanh_vjp)
    t: float
    k: float

    def tk(self) -> tuple[float, float]:
        return self.t, self.k

    def surrogate(self, x: torch.Tensor):
        return self.vjp, (self.t, self.k * self.t)

    def extra_repr(self) -> str:
        return f"t={self.t:.3f}, k={self.k:.3f}"


@register("ede")
class EDE(TanhSurrogate):
    def __init__(self, t_min: float = 0.1, t_max: float = 10.0, fused: bool = False) -> None:
        super().__init__(fused=fused)
        if not 0 < t_min <= t_max:
            raise ValueError("ede needs 0 < t_min <= t_max")
        self.t_min, self.t_max = float(t_min), float(t_max)
        self.schedule(self.progress_value)

    def schedule(self, p: float) -> None:
        t = self.t_min * (self.t_max / self.t_min) ** p
        self.t, self.k = t, max(1.0 / t, 1.0)

"""ReCU: rectified clamp unit ("ReCU: Reviving the Dead Weights in Binary Neural Networks",
ICCV 2021).

Weights (``role="weight"``), per output channel c, then over the whole tensor:

    w1 = (w - mean_c(w)) / (sqrt(var_c(w) + 1e-5) / (2 sqrt 2))     balanced and standardized
    Q  = -mean(|w1|) * ln(2 - 2 tau)                                  tau-quantile of Laplace(0, mean|w1|)
    b  = sign(clamp(w1, -Q, Q)),   db/dw = d clamp(w1)/dw            (identity through the sign)

Weights beyond the quantile Q are clamped: their sign is kept and they receive no gradient,
so the mass of "dead" weights far from zero (whose sign never flips) is pulled back into the
range where a step can change them. Q is a constant of the step (no gradient through it).
tau rises from ``tau_min`` to ``tau_max`` over training, exponentially in the progress p:

    tau(p) = tau_min + (tau_max - tau_min) (e^p - 1) / (e - 1)

(the paper's schedule with p = epoch / epochs; here p is the fraction of training steps).
The packed sign of a weight is sign(w - mean_c(w)): the standardization's scale is positive.

Inputs (``role="input"``): while training, x / sqrt(var_n(x) + 1e-5) per sample n (no
centering; gradients flow through the variance), then sign with ApproxSign's gradient
2 relu(1 - |x|); in eval x itself, whose sign is the same. The reference pairs this with a
learned per-output-channel scale (``binarize.scale=learned``). ``fused``: the input's backward through
:mod:`.fusion`.
"""

from __future__ import annotations

import math

import torch

from .approx import approx_vjp
from .base import SignEstimator, SurrogateSign
from .registry import register

EPS = 1e-5
STD_TARGET = 2 * math.sqrt(2)  # the standardized weights' standard deviation


def recu_tau(p: float, tau_min: float, tau_max: float) -> float:
    """tau at training progress p in [0, 1]: tau_min at p = 0, tau_max at p = 1, exponential."""
    return tau_min + (tau_max - tau_min) * (math.exp(p) - 1.0) / (math.e - 1.0)


def standardized_weight(w: torch.Tensor) -> torch.Tensor:
    """(w - mean_c) / (sqrt(var_c + 1e-5) / (2 sqrt 2)), statistics over all but dim 0 (unbiased var)."""
    dims = tuple(range(1, w.dim()))
    centered = w - w.mean(dims, keepdim=True)
    return centered / (torch.sqrt(centered.var(dims, keepdim=True) + EPS) / STD_TARGET)


def quantile_factor(tau: float) -> float:
    """-ln(2 - 2 tau): the tau-quantile of a zero-mean Laplace law in units of its scale b."""
    return -math.log(2.0 - 2.0 * tau)


def laplace_quantile(w1: torch.Tensor, factor: float) -> torch.Tensor:
    """mean|w1| x ``factor`` (:func:`quantile_factor`): the quantile of the zero-mean Laplace law
    fitted to w1 (its maximum-likelihood scale is mean|w1|), detached."""
    return w1.detach().abs().mean() * factor


def sample_standardized(x: torch.Tensor) -> torch.Tensor:
    """x / sqrt(var + 1e-5), the variance per sample over all its other dims (unbiased)."""
    return x / torch.sqrt(x.var(tuple(range(1, x.dim())), keepdim=True) + EPS)


class StandardizedInputSign(SignEstimator):
    """What ReCU and BiPer share: ``role="input"``: the sign of the per-sample standardized input
    while training (sign(x) in eval) with ApproxSign's gradient; ``role="weight"``: the
    subclass's :meth:`weight_sign`, which brings its own gradient (identity through the sign)."""

    vjp_fn = staticmethod(approx_vjp)

    def __init__(self, role: str = "input", fused: bool = False) -> None:
        super().__init__(fused=fused)
        self.role = role

    def surrogate(self, x: torch.Tensor):
        return (None, ()) if self.role == "weight" else (self.vjp, ())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.role == "weight":
            return self.weight_sign(x)
        return SurrogateSign.apply(sample_standardized(x) if self.training else x, self.vjp, ())

    def weight_sign(self, w: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def weight_repr(self) -> str:
        return ""

    def extra_repr(self) -> str:
        weight = f"{self.weight_repr()}, " if self.role == "weight" else ""
        return f"role={self.role}, {weight}{super().extra_repr()}"


@register("recu")
class ReCU(StandardizedInputSign):
    """``role="weight"``: the rectified clamp at the tau-quantile; ``role="input"``: see
    :class:`StandardizedInputSign`."""

    def __init__(self, tau_min: float = 0.85, tau_max: float = 0.99, role: str = "input", fused: bool = False) -> None:
        if not 0.5 <= tau_min <= tau_max < 1.0:
            raise ValueError(f"recu needs 0.5 <= tau_min <= tau_max < 1 (got tau_min={tau_min}, tau_max={tau_max})")
        super().__init__(role=role, fused=fused)
        self.tau_min, self.tau_max = float(tau_min), float(tau_max)
        self.schedule(0.0)

    def schedule(self, p: float) -> None:
        self.tau = recu_tau(p, self.tau_min, self.tau_max)
        self.factor = quantile_factor(self.tau)  # a plain number: a compiled step takes it as an input

    def weight_sign(self, w: torch.Tensor) -> torch.Tensor:
        w1 = standardized_weight(w)
        q = laplace_quantile(w1, self.factor)
        return SurrogateSign.apply(torch.clamp(w1, -q, q), None, ())

    def weight_repr(self) -> str:
        return f"tau={self.tau:.4f} ({self.tau_min}..{self.tau_max})"

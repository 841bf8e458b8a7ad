"""BiPer: binary weights through a periodic function ("BiPer: Binary Neural Networks using a
Periodic Function", CVPR 2024).

Weights (``role="weight"``): a square wave of the latent weight in the forward pass and the
derivative of the sine it is the sign of in the backward pass,

    b(w) = sign(sin(omega w)),      db/dw = omega cos(omega w),

so that the gradient is periodic like the values: every weight sits on a slope of the sine,
none in a flat tail. omega (``omega``, the reference's ``freq``; 20 for CIFAR-10 ResNet-18)
sets the period 2 pi / omega against the spread of the latent weights, and with it the
quantization error between sin(omega w) and its sign. The packed sign of a weight is the
forward value itself. (The paper trains a first stage with the real-valued sin(omega w) as
weights; this estimator is its binary second stage, trained from scratch or after a
``stages`` recipe.)

Inputs (``role="input"``): as ReCU's (:mod:`.recu`): the per-sample standardized input while
training, ApproxSign's gradient 2 relu(1 - |x|).
"""

from __future__ import annotations

import torch

from .base import SurrogateSign
from .recu import StandardizedInputSign
from .registry import register


@register("biper")
class BiPer(StandardizedInputSign):
    """``omega``: the sine's angular frequency (weights only)."""

    def __init__(self, omega: float = 20.0, role: str = "input", fused: bool = False) -> None:
        if not omega > 0:
            raise ValueError(f"biper needs omega > 0 (got {omega})")
        super().__init__(role=role, fused=fused)
        self.omega = float(omega)

    def weight_sign(self, w: torch.Tensor) -> torch.Tensor:
        return SurrogateSign.apply(torch.sin(w * self.omega), None, ())

    def weight_repr(self) -> str:
        return f"omega={self.omega}"

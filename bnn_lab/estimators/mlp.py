"""Binarization as classification (He et al. 2022, "Binarizing by Classification: Is soft
function really necessary?").

A small classifier c: R -> R, applied elementwise, decides the backward pass: the forward
output is exactly sign(x) and the gradient is that of tanh(c(x)),

    dx = dy * tanh'(c(x)) * c'(x),

while c's own parameters receive dy * d tanh(c(x)) / d theta, so they train with the model.
``hidden=0`` gives the linear classifier c(x) = a x + b; ``hidden=h`` adds a one-hidden-layer
ReLU MLP, c(x) = a x + b + w2 . relu(w1 x + b1), whose output weights w2 start at zero.
Both start as c(x) = x (gradient 1 - tanh(x)^2, 1 at x = 0). The MLP costs ``hidden`` floats
per activation during training (nothing at inference: the forward is a plain sign).
"""

from __future__ import annotations

import torch
from torch import nn

from .base import SignEstimator, binary_sign
from .registry import register


@register("mlp")
class MLPSign(SignEstimator):
    def __init__(self, hidden: int = 8) -> None:
        super().__init__()
        if hidden < 0 or hidden % 2:
            raise ValueError("mlp needs an even hidden >= 0 (0: a linear classifier)")
        self.hidden = int(hidden)
        self.a = nn.Parameter(torch.ones(()))
        self.b = nn.Parameter(torch.zeros(()))
        if self.hidden:
            half = self.hidden // 2
            # kinks spread over [-1, 1], half the units rising, half falling
            self.w1 = nn.Parameter(torch.cat([torch.ones(half), -torch.ones(half)]))
            self.b1 = nn.Parameter(torch.linspace(-1, 1, self.hidden))
            self.w2 = nn.Parameter(torch.zeros(self.hidden))

    def classifier(self, x: torch.Tensor) -> torch.Tensor:
        linear = self.a * x + self.b
        if self.hidden == 0:
            return linear
        return linear + torch.relu(x.unsqueeze(-1) * self.w1 + self.b1) @ self.w2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled() or not (x.requires_grad or self.training):
            return binary_sign(x)
        soft = torch.tanh(self.classifier(x))
        return binary_sign(x.detach()) + (soft - soft.detach())  # value: exactly sign(x)

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        """The surrogate derivative d tanh(c(x)) / dx (for inspection and tests)."""
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(torch.tanh(self.classifier(x)).sum(), x)
        return g

    def extra_repr(self) -> str:
        return f"hidden={self.hidden}"

"""Activations the surgery can put in place of ReLU (``binarize.policy.activation``)."""

from __future__ import annotations

import torch
from torch import nn

from ..registry import Registry

# name -> factory(channels); channels may be None when it cannot be inferred (per-channel
# activations then use one)
ACTIVATIONS: Registry = Registry("binarize.policy.activation", "activations")
register_activation = ACTIVATIONS.register


class RPReLU(nn.Module):
    """ReActNet's RPReLU: PReLU(x - gamma) + zeta with learned per-channel shifts."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.shift_in = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.prelu = nn.PReLU(channels, init=0.25)
        self.shift_out = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return self.prelu(x - self.shift_in.view(shape)) + self.shift_out.view(shape)


register_activation("relu")(lambda c: nn.ReLU())
register_activation("identity")(lambda c: nn.Identity())
register_activation("hardtanh")(lambda c: nn.Hardtanh())
register_activation("prelu")(lambda c: nn.PReLU(c or 1))
register_activation("rprelu")(lambda c: RPReLU(c or 1))


def build_activation(name: str, channels: int | None) -> nn.Module:
    return ACTIVATIONS.get(name)(channels)

"""RSign (ReActNet, Liu et al. 2020): sign(x - b_c) with a learned threshold b_c per
channel for activations, and the ApproxSign gradient (2 - 2|u|) 1[|u| <= 1] at
u = x - b_c; the threshold gets the opposite gradient. Pair it with RPReLU activations
(``binarize.policy.activation=rprelu``). For weights (or without a channel count) the
threshold is absent: plain sign with the ApproxSign gradient.

Channels are dimension 1 of 4-D (conv) inputs and the last dimension otherwise (linear).
"""

from __future__ import annotations

import torch
from torch import nn

from .approx import ApproxSign
from .registry import register


@register("rsign")
class RSign(ApproxSign):
    def __init__(self, channels: int | None = None, role: str = "input", fused: bool = False) -> None:
        super().__init__(fused=fused)
        self.threshold = nn.Parameter(torch.zeros(channels)) if (channels and role == "input") else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.threshold is not None:
            shape = (1, -1, 1, 1) if x.dim() == 4 else (-1,)
            x = x - self.threshold.view(shape)
        return super().forward(x)

    def packed_threshold(self) -> torch.Tensor | None:
        return None if self.threshold is None else self.threshold.detach()

    def extra_repr(self) -> str:
        return f"channels={None if self.threshold is None else self.threshold.numel()}"

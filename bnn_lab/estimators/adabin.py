"""AdaBin (Tu et al. 2022): binary set {alpha - beta, alpha + beta} instead of {-1, +1},

    out = beta * sign((x - alpha) / beta) + alpha,

with the clipped-STE gradient 1[|u| <= 1] at u = (x - alpha) / beta (alpha and beta get
theirs through the same expression).

- activations (``role="input"``): alpha (center) and beta (distance) are learned scalars,
  initialized to 0 and 1;
- weights (``role="weight"``): computed per output channel by equalizing the weight
  distribution, alpha = mean(w), beta = std(w).

The output is binary in the sense of a two-valued set per channel, not +-1.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import NoPackedForm
from .registry import register
from .ste import STE


@register("adabin")
class AdaBin(STE):
    def __init__(self, role: str = "input") -> None:
        super().__init__(clip=1.0)
        self.learned = role == "input"
        if self.learned:
            self.alpha = nn.Parameter(torch.zeros(()))
            self.beta = nn.Parameter(torch.ones(()))

    def center_distance(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.learned:
            return self.alpha, self.beta.abs().clamp_min(1e-4)
        rows = x.reshape(x.shape[0], -1)
        shape = (-1,) + (1,) * (x.dim() - 1)
        alpha = rows.mean(1).view(shape)
        beta = (rows.std(1) if rows.shape[1] > 1 else torch.ones(rows.shape[0], device=x.device)).clamp_min(1e-8)
        return alpha, beta.view(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha, beta = self.center_distance(x)
        return beta * super().forward((x - alpha) / beta) + alpha

    def packed_threshold(self) -> torch.Tensor | None:
        raise NoPackedForm("input binarizer AdaBin gives {alpha - beta, alpha + beta}, not +-1")

    def extra_repr(self) -> str:
        return "learned center/distance" if self.learned else "computed center/distance"

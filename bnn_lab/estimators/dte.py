"""DTE, the distribution-sensitive two-stage estimator of DIR-Net (Qin et al. 2022).

Gradient g(x) = k t (1 - tanh(t x)^2), with this two-stage schedule over the training
progress p in [0, 1] and the switch point s (``switch``, 0.5 by default):

- stage 1, p < s (updating ability first): t = t_min ** (1 - p / s), rising from t_min to
  1, with k = 1 / t. The gradient keeps height 1 at x = 0 and narrows from almost flat
  (identity-like, every latent value gets updated) to the width of the clipped STE.
- stage 2, p >= s (accuracy later): t = t_max ** ((p - s) / (1 - s)), rising from 1 to
  t_max, with k = 1. The gradient sharpens towards the derivative of sign.

Distribution sensitivity: for weights (``role="weight"``) the latent weights are
standardized per output channel before binarization (DIR-Net's information-maximizing
balance and standardization), x_hat = (x - mean) / std, and the sign and the gradient are
taken at x_hat, so the schedule sees every channel at the same scale. The forward value
sign(x - mean) is exactly +-1. Activations use the schedule directly. The backward is EDE's
(one tanh, then aten's fused tanh backward).
"""

from __future__ import annotations

import torch

from .ede import TanhSurrogate
from .registry import register


@register("dte")
class DTE(TanhSurrogate):
    def __init__(
        self, t_min: float = 0.1, t_max: float = 10.0, switch: float = 0.5, role: str = "input", fused: bool = False
    ) -> None:
        super().__init__(fused=fused)
        if not (0 < t_min <= 1 <= t_max and 0 < switch < 1):
            raise ValueError("dte needs 0 < t_min <= 1 <= t_max and 0 < switch < 1")
        self.t_min, self.t_max, self.switch = float(t_min), float(t_max), float(switch)
        self.standardize = role == "weight"
        self.schedule(self.progress_value)

    def schedule(self, p: float) -> None:
        s = self.switch
        if p < s:
            t = self.t_min ** (1 - p / s)
            self.t, self.k = t, 1.0 / t
        else:
            self.t, self.k = self.t_max ** ((p - s) / (1 - s)), 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.standardize and x.dim() > 1:
            rows = x.reshape(x.shape[0], -1)
            mean = rows.mean(1, keepdim=True)
            std = rows.std(1, keepdim=True).clamp_min(1e-8) if rows.shape[1] > 1 else torch.ones_like(mean)
            x = ((rows - mean) / std).reshape(x.shape)
        return super().forward(x)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, standardize={self.standardize}"

"""``imb``: DIR-Net's information maximizing binarization (IMB), from *Distribution-sensitive
Information Retention for Accurate Binary Neural Network* (Qin et al.).

Per output channel o, over its K = C_in k_h k_w latent weights w:

    w_hat = (w - mean(w)) / std(w)                  balanced, then standardized
    W_b   = sign(w_hat) * 2^round(log2(mean |w_hat|))

Balancing (zero mean) makes about half the signs +1, which maximizes the entropy of the
binary weights; standardizing puts every channel at the same scale, so the estimator's
gradient window sees all channels alike. std is the sample standard deviation (K - 1 in the
denominator), clamped at 1e-8; a channel of one weight is left as it is. The sign and its
gradient come from the run's estimator applied to w_hat, and the gradient flows through the
mean and std into w. The power-of-two factor is detached (no gradient, as in the Libra-PB
binarization of IR-Net that IMB extends): at inference it is a bit shift, and here it folds
exactly into the packed layer's per-channel scale. For standardized weights mean |w_hat| is
close to sqrt(2 / pi) ~ 0.8, so the factor is usually 1 (0.5 or 2 for far-from-normal
channels).
"""

from __future__ import annotations

import torch
from torch import nn

from .weight_norm import WeightNorm, register_weight_norm

EPS = 1e-8


def imb_normalize(weight: torch.Tensor) -> torch.Tensor:
    """w_hat = (w - mean) / std per output channel (first dimension), same shape as ``weight``."""
    rows = weight.reshape(weight.shape[0], -1)
    if rows.shape[1] < 2:
        return weight
    mean = rows.mean(1, keepdim=True)
    std = rows.std(1, keepdim=True).clamp_min(EPS)
    return ((rows - mean) / std).reshape(weight.shape)


def power_of_two_scale(w_hat: torch.Tensor) -> torch.Tensor:
    """2^round(log2(mean |w_hat|)) per output channel, detached: shape (O,)."""
    m = w_hat.detach().abs().reshape(w_hat.shape[0], -1).mean(1).clamp_min(EPS)
    return torch.exp2(torch.round(torch.log2(m)))


@register_weight_norm("imb")
class ImbWeightNorm(WeightNorm):
    def __init__(self, layer: nn.Module) -> None:
        super().__init__()

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return imb_normalize(weight)

    @torch.no_grad()
    def packed_scale(self, weight: torch.Tensor) -> torch.Tensor:
        return power_of_two_scale(imb_normalize(weight))

"""Output scaling of binary layers (``binarize.scale``).

- ``none``: no scaling (BinaryDenseNet shows it is not needed from scratch).
- ``xnor``: per-output-channel mean |W| of the latent weights, detached (XNOR-Net).
- ``learned``: a learned per-output-channel alpha (XNOR++), initialised to mean |W|.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..errors import ConfigError

_SCALES: dict[str, Callable[[torch.Tensor], nn.Module]] = {}


def register_scale(name: str):
    def deco(fn):
        _SCALES[name] = fn
        return fn

    return deco


def scale_names() -> list[str]:
    return sorted(_SCALES)


def build_scale(name: str, weight: torch.Tensor) -> nn.Module:
    if name not in _SCALES:
        raise ConfigError(f"unknown binarize.scale {name!r}; valid: {', '.join(scale_names())}")
    return _SCALES[name](weight)


def _channel_shape(weight: torch.Tensor) -> tuple[int, ...]:
    # (1, O, 1, 1) for conv outputs (N, O, H, W); (O,) for linear outputs (..., O)
    return (1, weight.shape[0], 1, 1) if weight.dim() == 4 else (weight.shape[0],)


class NoScale(nn.Module):
    def forward(self, out: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return out


class XnorScale(nn.Module):
    def forward(self, out: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        alpha = weight.detach().abs().flatten(1).mean(1)
        return out * alpha.view(_channel_shape(weight))


class LearnedScale(nn.Module):
    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.alpha = nn.Parameter(weight.detach().abs().flatten(1).mean(1).clone())

    def forward(self, out: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return out * self.alpha.view(_channel_shape(weight))


register_scale("none")(lambda w: NoScale())
register_scale("xnor")(lambda w: XnorScale())
register_scale("learned")(LearnedScale)

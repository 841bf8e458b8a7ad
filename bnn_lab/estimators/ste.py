"""Straight-through estimators.

- ``ste``: clipped STE of BinaryNet (Hubara et al. 2016), g(x) = 1[|x| <= clip].
- ``identity``: plain STE (Bengio et al. 2013), g(x) = 1.
"""
from __future__ import annotations

import torch

from .base import SignEstimator
from .registry import register


@register("ste")
class STE(SignEstimator):
    def __init__(self, clip: float = 1.0) -> None:
        super().__init__()
        self.clip = float(clip)

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        return (x.abs() <= self.clip).to(x.dtype)

    def extra_repr(self) -> str:
        return f"clip={self.clip}"


@register("identity")
class Identity(SignEstimator):
    def grad(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(x)

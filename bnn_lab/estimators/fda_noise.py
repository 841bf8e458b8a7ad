"""FDA's noise adaptation: e(x) = fc2(relu(fc1(x))) + 0.1 sin(x), added to sign(x) in training.

The binarized weight of an FDA layer is ``sign(w) + alpha * e(w)`` (one row of w per output
channel), with sign's gradient replaced by the Fourier surrogate. Written as plain autograd
that is some twenty small ops and nine graph nodes per layer, forward and backward; their
fixed per-op cost, not arithmetic, made the noise a tenth of a float training step on CPU.
:class:`NoisySign` does sign, noise and both gradients in one autograd node with the
backward written out (``w`` rows x, hidden h = alpha relu(x W1^T), upstream gradient g):

    out   = sign(x) + h W2^T + 0.1 alpha sin(x)
    dW2   = g^T h
    dpre  = alpha (g W2) * 1[h > 0]
    dW1   = dpre^T x
    dx    = vjp(g, x) + dpre W1 + 0.1 alpha cos(x) g        (vjp: the Fourier surrogate)

The elementwise part of dx is one function (:func:`noise_vjp`), compiled into one loop for
large weights when the estimator is ``fused``.

``tests/test_estimator_backward.py`` checks values and gradients against the formula written
out with numpy and float64 autograd.
"""
from __future__ import annotations

import contextlib
import functools

import torch
from torch import nn

from .base import Vjp, binary_sign
from .fusion import fuse


class NoiseAdaptation(nn.Module):
    """The parameters of e(x) = fc2(relu(fc1(x))) + 0.1 sin(x) over the last dimension;
    :meth:`perturbed_sign` computes sign(x) + alpha e(x) (:class:`NoisySign`)."""

    def __init__(self, features: int, reduction: int = 64) -> None:
        super().__init__()
        hidden = max(features // reduction, 1)
        self.fc1 = nn.Linear(features, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, features, bias=False)
        nn.init.zeros_(self.fc2.weight)  # starts as the pure 0.1 sin(x) term

    def perturbed_sign(self, x: torch.Tensor, alpha: float, vjp: Vjp, constants: tuple) -> torch.Tensor:
        """sign(x) + alpha e(x) for 2-D x (rows of features), sign's gradient through ``vjp``,
        a :func:`noise_vjp` (whose constants start with the sine term's factor).

        Runs in float32 outside autocast (the weights are float32 master copies; the noise
        matrices are tiny), so forward and the hand-written backward see one dtype."""
        device = x.device.type
        with torch.autocast(device, enabled=False) if torch.is_autocast_enabled(device) else contextlib.nullcontext():
            return NoisySign.apply(x, self.fc1.weight, self.fc2.weight, alpha, vjp, constants)


@functools.cache
def with_cosine(sign_vjp: Vjp) -> Vjp:
    """``vjp(g, x, s, *constants) = sign_vjp(g, x, *constants) + s cos(x) g``: the elementwise
    part of x's gradient in one function (one per ``sign_vjp`` and process)."""
    def vjp(g: torch.Tensor, x: torch.Tensor, scale: float, *constants) -> torch.Tensor:
        return torch.cos(x).mul_(g).mul_(scale).add_(sign_vjp(g, x, *constants))

    vjp.__name__ = vjp.__qualname__ = f"{sign_vjp.__name__}_with_cosine"
    return vjp


def noise_vjp(sign_vjp: Vjp, fused: bool, fast_sign_vjp: Vjp | None = None) -> Vjp:
    """:func:`with_cosine` of ``sign_vjp``; with ``fused``, one compiled loop for weights large
    enough (:mod:`.fusion`), built on ``fast_sign_vjp`` if given."""
    eager = with_cosine(sign_vjp)
    if not fused:
        return eager
    return fuse(eager, with_cosine(fast_sign_vjp) if fast_sign_vjp is not None else None)


class NoisySign(torch.autograd.Function):
    """sign(x) + alpha (relu(x W1^T) W2^T + 0.1 sin x) with the surrogate ``vjp`` for sign;
    ``alpha`` > 0 (a Python number: it only multiplies tensors, so torch.compile keeps it a
    graph input)."""

    @staticmethod
    def forward(ctx, x, w1, w2, alpha: float, vjp: Vjp, constants: tuple):
        hidden = torch.mm(x, w1.t()).relu_().mul_(alpha)
        out = torch.sin(x).mul_(0.1 * alpha).add_(binary_sign(x)).addmm_(hidden, w2.t())
        ctx.save_for_backward(x, w1, w2, hidden)
        ctx.alpha, ctx.vjp, ctx.constants = alpha, vjp, constants
        return out

    @staticmethod
    def backward(ctx, g):
        x, w1, w2, hidden = ctx.saved_tensors
        alpha = ctx.alpha
        dpre = torch.ops.aten.threshold_backward(torch.mm(g, w2), hidden, 0).mul_(alpha)
        dx = dw1 = dw2 = None
        if ctx.needs_input_grad[0]:
            dx = ctx.vjp(g, x, 0.1 * alpha, *ctx.constants).addmm_(dpre, w1)
        if ctx.needs_input_grad[1]:
            dw1 = torch.mm(dpre.t(), x)
        if ctx.needs_input_grad[2]:
            dw2 = torch.mm(g.t(), hidden)
        return dx, dw1, dw2, None, None, None

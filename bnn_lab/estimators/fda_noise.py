"""FDA's noise adaptation: e(x) = fc2(relu(fc1(x))) + 0.1 sin(x), added to sign(x) in training.

The binarized weight of an FDA layer is ``sign(w) + alpha * e(w)`` (one row of w per output
channel), with sign's gradient replaced by the Fourier surrogate. The work splits in two:

- the elementwise part, the same for every layer: ``sign(w) + s sin(w)`` forward and
  ``surrogate(w) + s cos(w)`` as the factor of the upstream gradient (s = 0.1 alpha). For
  all the layers of a model at once (:func:`noisy_signs` gets their weights as a list) it
  is one pass over the concatenated weights, one compiled loop when fused, and one autograd
  node (:class:`ElementwiseTerms`) whose backward is one multiplication;
- the small matrices, per layer: ``+ alpha relu(w W1^T) W2^T`` in plain autograd.

Per layer and step that replaces some twenty elementwise ops on a small weight, whose fixed
cost per op, not their arithmetic, made FDA's weight path a tenth of a float training step on
CPU (``docs/performance-log.md``).

``tests/test_estimator_backward.py`` checks values and gradients against the formula written
out with numpy and float64 autograd.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Sequence

import torch
from torch import nn

from .base import Vjp, binary_sign
from .fusion import fuse

SINE_FACTOR = 0.1  # e(x) = ... + 0.1 sin(x)


class NoiseAdaptation(nn.Module):
    """The parameters of e(x) = fc2(relu(fc1(x))) + 0.1 sin(x) over the last dimension."""

    def __init__(self, features: int, reduction: int = 64) -> None:
        super().__init__()
        hidden = max(features // reduction, 1)
        self.fc1 = nn.Linear(features, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, features, bias=False)
        nn.init.zeros_(self.fc2.weight)  # starts as the pure 0.1 sin(x) term

    def add_hidden_term(self, base: torch.Tensor, rows: torch.Tensor, alpha: float) -> torch.Tensor:
        """base + alpha fc2(relu(fc1(rows))), for 2-D rows (one per output channel)."""
        hidden = torch.mm(rows, self.fc1.weight.t()).relu_() * alpha  # relu keeps its output: no in-place after it
        return torch.addmm(base, hidden, self.fc2.weight.t())


def terms_with_sine(sign_vjp: Vjp, x: torch.Tensor, scale: float, *constants) -> tuple[torch.Tensor, torch.Tensor]:
    """(sign(x) + s sin(x), sign_vjp(1, x, *constants) + s cos(x)): the elementwise part of
    sign(x) + s sin(x) and the factor of its gradient."""
    value = torch.sin(x).mul_(scale).add_(binary_sign(x))
    factor = torch.cos(x).mul_(scale).add_(sign_vjp(torch.ones_like(x), x, *constants))
    return value, factor


@functools.cache
def with_sine(sign_vjp: Vjp) -> Callable:
    """:func:`terms_with_sine` bound to ``sign_vjp``, one per ``sign_vjp`` and process (a
    partial of module-level functions: models holding it can be pickled)."""
    return functools.partial(terms_with_sine, sign_vjp)


def noise_terms(sign_vjp: Vjp, fused: bool, fast_sign_vjp: Vjp | None = None) -> Callable:
    """:func:`with_sine` of ``sign_vjp``; with ``fused``, one compiled loop for inputs large
    enough (:mod:`.fusion`), built on ``fast_sign_vjp`` if given."""
    eager = with_sine(sign_vjp)
    if not fused:
        return eager
    return fuse(eager, with_sine(fast_sign_vjp) if fast_sign_vjp is not None else None)


class ElementwiseTerms(torch.autograd.Function):
    """``terms(x, *constants) -> (value, factor)``: ``value`` forward, upstream gradient times
    ``factor`` backward (``constants``: one tuple argument, see :class:`.base.SurrogateSign`)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, terms: Callable, constants: tuple):
        value, factor = terms(x, *constants)
        ctx.save_for_backward(factor)
        return value

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        (factor,) = ctx.saved_tensors
        return g * factor, None, None


def noisy_signs(
    weights: Sequence[torch.Tensor], noises: Sequence[NoiseAdaptation], alpha: float, terms: Callable, constants: tuple
) -> list[torch.Tensor]:
    """sign(w) + alpha e(w) for each weight (rows: the first dimension), its noise module
    alongside; sign's gradient through ``terms`` (a :func:`noise_terms`) with ``constants``.

    The weights are concatenated for the elementwise part, so they share a device and dtype.
    Runs in float32 outside autocast (the weights are float32 master copies; the noise
    matrices are tiny)."""
    device = weights[0].device.type
    autocast = torch.autocast(device, enabled=False) if torch.is_autocast_enabled(device) else contextlib.nullcontext()
    with autocast:
        flat = weights[0].reshape(-1) if len(weights) == 1 else torch.cat([w.reshape(-1) for w in weights])
        values = ElementwiseTerms.apply(flat, terms, (SINE_FACTOR * alpha, *constants))
        out = []
        for value, w, noise in zip(values.split([w.numel() for w in weights]), weights, noises):
            rows = w.reshape(w.shape[0], -1)
            out.append(noise.add_hidden_term(value.view(rows.shape), rows, alpha).view(w.shape))
        return out

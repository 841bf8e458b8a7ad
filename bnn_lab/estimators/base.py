"""Base class of every sign-gradient estimator, and the one autograd Function they share.

Forward is always the exact sign with sign(0) = +1 (never 0): see docs/methods.md, section 1.
Each estimator names a *vjp*, a plain function ``vjp(dy, x, *constants) -> dy * g(x)`` with
g its surrogate derivative, written with as few elementwise passes over the activation as
plain torch allows (aten's fused backward kernels where one computes exactly g, closed forms
instead of sums): on CPU a binary step is bound by these passes, not by the convolutions.
:class:`SurrogateSign` saves only x, in its own dtype, and calls the vjp in the backward pass.

Progress-dependent constants (EDE's t, FDA's number of terms...) are plain Python numbers,
recomputed in ``set_progress``: an eager step then reads no tensor back from the device (no
CUDA sync per layer), and ``torch.compile`` sees them as scalar inputs of one graph instead
of breaking the graph on ``.item()``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from .fusion import fuse

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
Vjp = Callable[..., torch.Tensor]


def binary_sign(x: torch.Tensor) -> torch.Tensor:
    """+1 where x >= 0 (including -0.0), -1 where x < 0, in x's dtype.

    sign() maps 0 to 0; sign(sign(x) + 0.5) sends {-1, 0, +1} to {-1, +1, +1}. Three
    vectorised passes, the last two in place: several times faster on CPU than a comparison
    (bool output) and a conversion, or than torch.where. sign() also maps NaN to 0, so a NaN
    gives +1 here (the packed path gives -1; a NaN activation means training has diverged,
    which the training loop reports as a non-finite loss).
    """
    return torch.sign(x).add_(0.5).sign_()


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """float32 for half / bfloat16 tensors (mixed precision): the surrogate formulas
    (sin, tanh, ratios) lose too much in 8 mantissa bits; x's own dtype otherwise."""
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype


def inclusive_bound(clip: float, dtype: torch.dtype) -> float:
    """The smallest value of ``dtype`` above ``clip``.

    aten's hardtanh backward, one fused pass, passes dy where ``-b < x < b`` (open interval);
    with b = this bound that is exactly ``|x| <= clip`` for every x of ``dtype``, the clip
    boundary the project uses (docs/methods.md, section 1).
    """
    c = torch.tensor(float(clip), dtype=torch.float64)
    below = c.to(dtype)
    if below.double() > c:  # rounded up: step back to the largest value <= clip
        below = torch.nextafter(below, torch.tensor(-math.inf, dtype=dtype))
    return float(torch.nextafter(below, torch.tensor(math.inf, dtype=dtype)))


def inclusive_bounds(clip: float) -> dict[torch.dtype, float]:
    """:func:`inclusive_bound` for every float dtype, computed once at construction (a lookup
    by ``x.dtype`` in forward stays a constant for ``torch.compile``)."""
    return {dtype: inclusive_bound(clip, dtype) for dtype in FLOAT_DTYPES}


def clipped_vjp(dy: torch.Tensor, x: torch.Tensor, bound: float) -> torch.Tensor:
    """dy * 1[|x| <= clip] in one pass; ``bound`` from :func:`inclusive_bound` for x's dtype."""
    return torch.ops.aten.hardtanh_backward(dy, x, -bound, bound)


UNIT_BOUNDS = inclusive_bounds(1.0)  # the |x| <= 1 window several estimators zero outside of


class SurrogateSign(torch.autograd.Function):
    """sign(x) forward; ``vjp(dy, x, *constants)`` backward (``vjp=None``: dy itself, the
    plain straight-through estimator, and x is not kept). ``constants`` is one tuple argument:
    torch.compile binds a fixed argument list reliably, not varargs."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, vjp: Vjp | None, constants: tuple):
        if vjp is not None:
            ctx.save_for_backward(x)
        ctx.vjp, ctx.constants = vjp, constants
        return binary_sign(x)

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        if ctx.vjp is None:
            return dy, None, None
        (x,) = ctx.saved_tensors
        return ctx.vjp(dy, x, *ctx.constants).to(dy.dtype), None, None


def _progress_loaded(module: "SignEstimator", incompatible_keys) -> None:
    module.set_progress(float(module.progress))  # the Python constants follow a loaded checkpoint


class Quantizer(nn.Module):
    """Base of every estimator module (the weights' and the inputs' binarizer); the hooks generic
    code calls, with their defaults:

    - ``bits``: bits per value as deployed (the summary's memory count): 1; ternary weights 2,
      k-bit inputs k.
    - ``set_progress(p)``: the fraction of training done, every training step: nothing.
    - ``packed_threshold()``: the t of sign(x - t) a packed layer applies to its input (None:
      t = 0); raises :class:`~bnn_lab.errors.NoPackedForm` when the values are not sign(x - t).
    - ``group_key(w)`` / ``binarize_group(estimators, weights)``: estimators whose binarization of
      several layers' weights can run as one call (:mod:`bnn_lab.layers.weight_group`) return a
      hashable key (equal keys share a call); None (the default): each layer on its own.
    """

    bits: int = 1

    def set_progress(self, p: float) -> None:
        """Training progress in [0, 1] (nothing to do by default)."""

    def packed_threshold(self) -> torch.Tensor | None:
        return None

    def group_key(self, w: torch.Tensor) -> tuple | None:
        return None

    @classmethod
    def binarize_group(cls, estimators: list["Quantizer"], weights: list[torch.Tensor]) -> list[torch.Tensor]:
        raise NotImplementedError(f"{cls.__name__} gives no group_key")


class SignEstimator(Quantizer):
    """sign() in the forward pass, ``dy * g(x)`` in the backward pass.

    Subclasses implement ``surrogate(x) -> (vjp, constants)``, usually returning ``self.vjp``:
    the class's ``vjp_fn``, run through :mod:`.fusion` (one compiled loop) when ``fused``.
    Estimators with a schedule recompute their constants in ``schedule(p)``. ``set_progress(p)`` receives the fraction
    of training done (0..1) on every training step; it is also kept in the ``progress``
    buffer, so that checkpoints hold it.
    """

    name: str = "base"
    vjp_fn: Vjp | None = None  # plain-torch vjp(dy, x, *constants); None: dy itself
    fast_vjp_fn: Vjp | None = None  # what the compiled loop runs instead, if not vjp_fn (:class:`.fusion.FusedLoop`)

    def __init__(self, fused: bool = False) -> None:
        super().__init__()
        self.fused = bool(fused)
        self.vjp = fuse(self.vjp_fn, self.fast_vjp_fn) if (self.fused and self.vjp_fn is not None) else self.vjp_fn
        self.register_buffer("progress", torch.zeros(()), persistent=True)
        self.progress_value = 0.0  # float(progress) without reading the buffer back
        self.register_load_state_dict_post_hook(_progress_loaded)

    def set_progress(self, p: float) -> None:
        p = float(np.float32(min(max(float(p), 0.0), 1.0)))  # the value the float32 buffer holds
        self.progress.fill_(p)
        self.progress_value = p
        self.schedule(p)

    def schedule(self, p: float) -> None:
        """Recompute progress-dependent constants (none by default)."""

    def surrogate(self, x: torch.Tensor) -> tuple[Vjp | None, tuple]:  # pragma: no cover - abstract
        raise NotImplementedError

    def packed_threshold(self) -> torch.Tensor | None:
        """What a packed layer needs to binarize its input as this estimator does at inference:
        the t of sign(x - t), per input channel, or None for t = 0. The forward value of every
        sign estimator is exactly sign(x); estimators that shift x return their shift, those
        whose value is not +-1 raise :class:`bnn_lab.errors.NoPackedForm`."""
        return None

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        """The surrogate derivative g(x), through the same vjp the backward pass uses."""
        vjp, constants = self.surrogate(x)
        ones = torch.ones_like(x)
        return ones if vjp is None else vjp(ones, x, *constants).to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        vjp, constants = self.surrogate(x)
        return SurrogateSign.apply(x, vjp, constants)

    def extra_repr(self) -> str:
        return f"progress={self.progress_value:.3f}"

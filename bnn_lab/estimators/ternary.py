"""``ternary``: ternary weights {-1, 0, +1} with 1-bit activations (TWN, Li et al. 2016;
larq's ``ste_tern``).

- weights (``role="weight"``): t(w) = sign(w) * 1[|w| > delta] per output channel, with
  delta = ``threshold`` * mean |w| of that channel (TWN's 0.7) or, with ``absolute: true``,
  delta = ``threshold`` itself (larq's 0.05); clipped straight-through gradient,
  g(w) = 1[|w| <= 1];
- inputs (``role="input"``): sign(x) with the clipped STE.

Ternary layers take 2 bits per weight in the model summary; the packed export keeps them in
float (its report says which).
"""

from __future__ import annotations

import torch

from .base import UNIT_BOUNDS, Quantizer, SurrogateSign, clipped_vjp
from .registry import register


class _Ternarize(torch.autograd.Function):
    """sign(w) 1[|w| > delta] forward (delta broadcast per output channel); dy 1[|w| <= 1] backward."""

    @staticmethod
    def forward(ctx, w: torch.Tensor, delta: torch.Tensor):
        ctx.save_for_backward(w)
        return torch.sign(w) * (w.abs() > delta).to(w.dtype)

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        (w,) = ctx.saved_tensors
        return clipped_vjp(dy, w, UNIT_BOUNDS[w.dtype]), None


@register("ternary")
class Ternary(Quantizer):
    def __init__(self, threshold: float = 0.7, absolute: bool = False, role: str = "input") -> None:
        super().__init__()
        self.threshold, self.absolute, self.role = float(threshold), bool(absolute), role
        self.bits = 2 if role == "weight" else 1  # what the summary counts

    def delta(self, w: torch.Tensor) -> torch.Tensor:
        """The threshold below which a weight is 0: per output channel, shaped to broadcast."""
        if self.absolute:
            return w.new_tensor(self.threshold)
        mean_abs = w.detach().abs().flatten(1).mean(1) if w.dim() > 1 else w.detach().abs().mean().reshape(1)
        return (self.threshold * mean_abs).reshape(-1, *([1] * (w.dim() - 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.role == "weight":
            return _Ternarize.apply(x, self.delta(x))
        return SurrogateSign.apply(x, clipped_vjp, (UNIT_BOUNDS[x.dtype],))

    def packed_threshold(self) -> None:
        """Inputs are binarized by sign(x): threshold 0 (the ternary weights keep the layer float)."""
        return None

    def extra_repr(self) -> str:
        kind = "absolute" if self.absolute else "x mean|w|"
        return f"threshold={self.threshold} ({kind}), role={self.role}"

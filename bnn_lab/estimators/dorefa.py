"""``dorefa``: k-bit activations with 1-bit weights (DoReFa-Net, Zhou et al. 2016; QNN's 1W2A,
Hubara et al. 2017), the low-bit neighbour of a 1W1A network.

- inputs (``role="input"``): q(x) = round(clip(x, 0, 1) * n) / n with n = 2^k - 1 levels above
  0; straight-through gradient inside the clip, g(x) = 1[0 <= x <= 1];
- weights (``role="weight"``): sign(w) with the clipped STE, g(w) = 1[|w| <= 1].

The clip to [0, 1] is DoReFa's activation function: use it without another one in front
(``binarize.policy.activation=identity``). The k-bit layers are not XNOR-popcount layers: the
model summary counts k bits per input and the packed export keeps them in float (its report says
which).
"""

from __future__ import annotations

import torch

from ..errors import NoPackedForm
from .base import UNIT_BOUNDS, Quantizer, SurrogateSign, clipped_vjp
from .registry import register


class _RoundClip(torch.autograd.Function):
    """round(clip(x, 0, 1) * n) / n forward; dy * 1[0 <= x <= 1] backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, levels: int):
        ctx.save_for_backward(x)
        return x.clamp(0, 1).mul(levels).round_().div_(levels)

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        (x,) = ctx.saved_tensors
        return dy * ((x >= 0) & (x <= 1)).to(dy.dtype), None


@register("dorefa")
class DoReFa(Quantizer):
    def __init__(self, bits: int = 2, role: str = "input") -> None:
        super().__init__()
        if role == "input" and (not isinstance(bits, int) or bits < 1):
            raise ValueError(f"estimator.bits must be a positive integer, got {bits!r}")
        self.role = role
        self.bits = int(bits) if role == "input" else 1  # what the summary counts
        self.levels = 2**self.bits - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.role == "input":
            return _RoundClip.apply(x, self.levels)
        return SurrogateSign.apply(x, clipped_vjp, (UNIT_BOUNDS[x.dtype],))

    def packed_threshold(self) -> None:
        """The packed layers binarize their inputs with one sign: k-bit inputs have no packed form."""
        raise NoPackedForm(f"{self.bits}-bit activations (dorefa): the packed kernels take 1-bit inputs")

    def extra_repr(self) -> str:
        return f"bits={self.bits}, role={self.role}"

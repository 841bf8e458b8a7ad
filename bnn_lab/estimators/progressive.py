"""``progressive``: weights binarized progressively by a shrinking temperature (BNext, Guo et al.
2022, "Join the High Accuracy Club on ImageNet with A Binary Neural Network Ticket").

- weights (``role="weight"``): b(w) = clamp(w / T, -1, 1) with T = t_start * factor^e in epoch e
  (e = floor(p * epochs), p the fraction of training done); once T < ``floor``, b(w) = sign(w)
  exactly. The gradient passes straight through, dw = dy, as in the authors' code. Early on the
  network trains with nearly real weights; each epoch pushes more of them to +-1.
- inputs (``role="input"``): sign(x) with the clipped straight-through gradient
  g(x) = 1[|x| <= input_clip] (1.5: the authors' HardSign).

T is a function of the progress, which the checkpoints hold (``SignEstimator.progress``), so a
resumed run continues with the temperature it stopped at. The packed form exists once T is
below its floor (the weights are then exactly +-1); before, the packed export keeps the layers
in float and says so. ``epochs`` is the number of epochs of the run (``${trainer.max_epochs}``).
"""

from __future__ import annotations

import math

import torch

from .base import SignEstimator, SurrogateSign, clipped_vjp, inclusive_bounds
from .registry import register


def epoch_at(progress: float, epochs: int) -> int:
    """The epoch that ``progress`` (steps done / total steps) falls in. The progress comes as a
    float32: the slack of 4 float32 rounding steps keeps the first step of an epoch in it."""
    return int(math.floor(progress * epochs + epochs * 2.0**-22))


class _SoftSign(torch.autograd.Function):
    """clamp(w / T, -1, 1) forward; dy itself backward."""

    @staticmethod
    def forward(ctx, w: torch.Tensor, temperature: float):
        return (w / temperature).clamp_(-1.0, 1.0)

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        return dy, None


@register("progressive")
class Progressive(SignEstimator):
    vjp_fn = staticmethod(clipped_vjp)

    def __init__(
        self,
        t_start: float = 1.0,
        factor: float = 0.9,
        floor: float = 1e-7,
        epochs: int = 1,
        input_clip: float = 1.0,
        role: str = "input",
    ) -> None:
        if not 0.0 < float(factor) < 1.0 or float(t_start) <= 0.0 or float(floor) <= 0.0:
            raise ValueError("estimator.factor must lie in (0, 1), t_start and floor be positive")
        if int(epochs) < 1:
            raise ValueError(f"estimator.epochs must be a positive integer, got {epochs!r}")
        self.t_start, self.factor, self.floor, self.epochs = float(t_start), float(factor), float(floor), int(epochs)
        self.role = role
        self.bounds = inclusive_bounds(float(input_clip))
        super().__init__()
        self.schedule(0.0)

    def schedule(self, p: float) -> None:
        self.temperature = self.t_start * self.factor ** epoch_at(p, self.epochs)
        self.exact = self.temperature < self.floor

    def surrogate(self, x: torch.Tensor):
        return self.vjp, (self.bounds[x.dtype],)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.role != "weight":
            return super().forward(x)
        if self.exact:
            return SurrogateSign.apply(x, None, ())  # sign(w), dw = dy
        return _SoftSign.apply(x, self.temperature)

    def extra_repr(self) -> str:
        state = "sign" if self.exact else f"T={self.temperature:.3g}"
        return f"role={self.role}, {state}, " + super().extra_repr()

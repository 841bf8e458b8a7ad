"""``rbonn``: Recurrent Bilinear Optimization (Xu et al., "Recurrent Bilinear Optimization for
Binary Neural Networks", ECCV 2022).

Binary weights w_b = sign(w) |alpha| with a learned alpha per output channel (initialized to
mean |w|), applied as an output scale: out = conv(x_b, sign(w)) |alpha|. Two additions:

- **Bilinear coupling.** The objective gains lambda/2 ||w - |alpha| b||^2 with b = sign(w)
  held constant, so w and alpha are pulled towards each other instead of being trained
  apart. With g the gradient at w_b (through the weight estimator):

      grad_w     = |alpha| g + lambda (w - |alpha| b)
      grad_alpha = sum_c(g b) - lambda sum_c((w - |alpha| b) b)        (per channel c, alpha > 0)

  computed by an identity autograd node on the latent weight whose backward adds the
  lambda terms (exactly the gradient of the term above; tests/test_rbonn.py checks both).
  The released code takes sum(g w) for the first part of grad_alpha; this is the exact
  derivative of the forward pass, sum(g b).
- **Recurrent step on sparse channels.** In training, the layer binarizes
  w' = w - u (grad_w * mask) instead of w, with grad_w the weight's gradient of the previous
  step (kept in the buffer ``last_grad``, so checkpoints hold it) and mask 1 on the output
  channels whose |alpha| ranks in the lowest (1 - ``threshold``) of the layer (threshold 0.6:
  the 40 % smallest; ranked by channel, ties by index). u (per channel, init 0.2) is learned
  through this use, at ``u_lr_factor`` (0.1) times the run's learning rate. As in the
  released code, w itself is not overwritten; evaluation and the packed export use sign(w).
  Under DDP ``last_grad`` is each process's own gradient before averaging (the buffer is
  broadcast from rank 0 with the others).

Packed form: |alpha| per output channel.
"""

from __future__ import annotations

import torch
from torch import nn

from .scaling import Scale, _channel_shape, register_scale


def _sign(w: torch.Tensor) -> torch.Tensor:
    return torch.where(w >= 0, 1.0, -1.0).to(w.dtype)


class BilinearCoupling(torch.autograd.Function):
    """Identity on ``w``; backward adds lambda (w - a b) to w's gradient and
    -lambda sum_c((w - a b) b) to a's (a = |alpha| per channel, b = sign(w)), and writes w's
    whole gradient into ``keep`` when given."""

    @staticmethod
    def forward(ctx, w: torch.Tensor, a: torch.Tensor, lam: float, keep: torch.Tensor | None):
        ctx.save_for_backward(w, a)
        ctx.lam, ctx.keep = lam, keep
        return w.clone()

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        w, a = ctx.saved_tensors
        b = _sign(w)
        r = w - a.view((-1,) + (1,) * (w.dim() - 1)) * b
        grad_w = g + ctx.lam * r
        grad_a = -ctx.lam * (r * b).flatten(1).sum(1)
        if ctx.keep is not None:
            ctx.keep.copy_(grad_w)
        return grad_w, grad_a, None, None


class RBONNScale(Scale):
    changes_latent = True

    def __init__(
        self, layer: nn.Module, lam: float = 1e-4, threshold: float = 0.6, u_init: float = 0.2, u_lr_factor: float = 0.1
    ) -> None:
        super().__init__()
        weight = layer.weight.detach()
        self.lam, self.threshold = float(lam), float(threshold)
        self.alpha = nn.Parameter(weight.abs().flatten(1).mean(1).clone())
        self.u = nn.Parameter(torch.full((weight.shape[0],), float(u_init)))
        self.u_lr_factor = float(u_lr_factor)
        self.register_buffer("last_grad", torch.zeros_like(weight))

    def sparse_mask(self) -> torch.Tensor:
        """1 on the output channels whose |alpha| is among the lowest (1 - threshold) of the layer."""
        a = self.alpha.detach().abs()
        rank = torch.empty_like(a, dtype=torch.long)
        rank[torch.argsort(a, stable=True)] = torch.arange(a.numel(), device=a.device)
        return (rank < int(a.numel() * (1 - self.threshold))).to(a.dtype)

    def latent_weight(self, weight: torch.Tensor) -> torch.Tensor:
        """What the layer binarizes: in training w' = w - u (last_grad * mask), through the
        bilinear coupling; in evaluation w."""
        if not self.training:
            return weight
        shape = (-1,) + (1,) * (weight.dim() - 1)
        step = self.last_grad * self.sparse_mask().view(shape)
        w = weight - self.u.view(shape) * step
        return BilinearCoupling.apply(w, self.alpha.abs(), self.lam, self.last_grad)

    def forward(self, out: torch.Tensor, weight: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        return out * self.alpha.abs().view(_channel_shape(weight))

    def packed_scale(self, weight: torch.Tensor) -> torch.Tensor:
        return self.alpha.detach().abs()

    def lr_factors(self) -> dict[nn.Parameter, float]:
        return {self.u: self.u_lr_factor}


register_scale("rbonn")(RBONNScale)

"""Binarization as classification (He et al. 2022, "Binarizing by Classification: Is soft
function really necessary?").

A small classifier c: R -> R, applied elementwise, decides the backward pass: the forward
output is exactly sign(x) and the gradient is that of tanh(c(x)),

    dx = dy * tanh'(c(x)) * c'(x),

while c's own parameters receive dy * d tanh(c(x)) / d theta, so they train with the model.
``hidden=0`` gives the linear classifier c(x) = a x + b; ``hidden=h`` adds a one-hidden-layer
ReLU MLP, c(x) = a x + b + w2 . relu(w1 x + b1), whose output weights w2 start at zero.
Both start as c(x) = x (gradient 1 - tanh(x)^2, 1 at x = 0).

The backward is one function of (dy, x) and the classifier's parameters (:func:`mlp_vjp`): with
u_j = w1_j x + b1_j and s = dy tanh'(c(x)),

    dx = s (a + sum_j w2_j w1_j [u_j > 0]),   da = sum s x,   db = sum s,
    dw2_j = sum s relu(u_j),   dw1_j = sum s w2_j [u_j > 0] x,   db1_j = sum s w2_j [u_j > 0],

run as one compiled loop where a compiler works (``fused``, :mod:`.fusion`): as separate torch
operations each hidden unit is a pass over an activation-sized tensor, which made a CPU step
several times slower than the STE's. Nothing at inference: the forward is a plain sign.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import SignEstimator, binary_sign, compute_dtype
from .registry import register


def mlp_vjp(dy, x, a, b, w1, b1, w2):
    """(dx, da, db, dw1, db1, dw2) of ``tanh(c(x))`` against ``dy`` (module docstring; ``w1 is None``:
    the linear classifier, and its three gradients are None), in float32 at least. One hidden unit
    at a time: activation-sized temporaries only, never ``hidden`` times that."""
    dt = compute_dtype(x)
    x, dy = x.to(dt), dy.to(dt)
    h = 0 if w1 is None else w1.shape[0]
    c, slope = a * x + b, a.expand_as(x)
    for j in range(h):
        u = x * w1[j] + b1[j]
        c = c + w2[j] * torch.relu(u)
        slope = slope + (w2[j] * w1[j]) * (u > 0).to(dt)
    t = torch.tanh(c)
    s = dy * (1 - t * t)
    dx, da, db = s * slope, (s * x).sum(), s.sum()
    if w1 is None:
        return dx, da, db, None, None, None
    dw1, db1, dw2 = [], [], []
    for j in range(h):
        u = x * w1[j] + b1[j]
        gated = s * (u > 0).to(dt)
        dw2.append((gated * u).sum())
        db1.append(gated.sum() * w2[j])
        dw1.append((gated * x).sum() * w2[j])
    return dx, da, db, torch.stack(dw1), torch.stack(db1), torch.stack(dw2)


class _MLPSignFunction(torch.autograd.Function):
    """sign(x) forward; :func:`mlp_vjp` (through ``vjp``) backward, for x and the parameters."""

    @staticmethod
    def forward(ctx, x, vjp, a, b, w1, b1, w2):
        ctx.vjp = vjp
        ctx.save_for_backward(x, a, b, w1, b1, w2)
        return binary_sign(x)

    @staticmethod
    def backward(ctx, dy):
        x, a, b, w1, b1, w2 = ctx.saved_tensors
        dx, da, db, dw1, db1, dw2 = ctx.vjp(dy, x, a, b, w1, b1, w2)
        need = ctx.needs_input_grad
        grads = [dx.to(dy.dtype) if need[0] else None, None]
        for wanted, g, p in zip(need[2:], (da, db, dw1, db1, dw2), (a, b, w1, b1, w2)):
            grads.append(g.to(p.dtype) if wanted and g is not None else None)
        return tuple(grads)


@register("mlp")
class MLPSign(SignEstimator):
    vjp_fn = staticmethod(mlp_vjp)

    def __init__(self, hidden: int = 8, fused: bool = False) -> None:
        super().__init__(fused)
        if hidden < 0 or hidden % 2:
            raise ValueError("mlp needs an even hidden >= 0 (0: a linear classifier)")
        self.hidden = int(hidden)
        self.a = nn.Parameter(torch.ones(()))
        self.b = nn.Parameter(torch.zeros(()))
        if self.hidden:
            half = self.hidden // 2
            # kinks spread over [-1, 1], half the units rising, half falling
            self.w1 = nn.Parameter(torch.cat([torch.ones(half), -torch.ones(half)]))
            self.b1 = nn.Parameter(torch.linspace(-1, 1, self.hidden))
            self.w2 = nn.Parameter(torch.zeros(self.hidden))

    def classifier(self, x: torch.Tensor) -> torch.Tensor:
        linear = self.a * x + self.b
        if self.hidden == 0:
            return linear
        return linear + torch.relu(x.unsqueeze(-1) * self.w1 + self.b1) @ self.w2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled() or not (x.requires_grad or self.training):
            return binary_sign(x)
        hidden = (self.w1, self.b1, self.w2) if self.hidden else (None, None, None)
        return _MLPSignFunction.apply(x, self.vjp, self.a, self.b, *hidden)

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        """The surrogate derivative d tanh(c(x)) / dx by autograd through :meth:`classifier`
        (independent of :func:`mlp_vjp`: for inspection and tests)."""
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(torch.tanh(self.classifier(x)).sum(), x)
        return g

    def extra_repr(self) -> str:
        return f"hidden={self.hidden}"

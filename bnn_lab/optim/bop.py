"""``bop``: the Binary Optimizer (Helwegen et al., "Latent Weights Do Not Exist: Rethinking
Binarized Neural Network Optimization"), for the latent binary weights
(``optimizer.latent=bop``) while the run's optimizer (Adam) trains the real parameters.

Bop keeps no latent magnitudes: the weights it owns are +-1, and a weight changes only by
flipping its sign. Per weight, with g its gradient:

    m <- (1 - gamma) m + gamma g                       (exponential moving average)
    w <- -w   where |m| > tau and sign(m) == sign(w)   (the gradient pushes w across zero)

gamma (adaptivity rate, default 1e-4) sets how far back m looks, tau (``threshold``,
default 1e-8) how strong and consistent the push must be. gamma is kept as the group's
``lr`` so that an LR schedule scales it (``optimizer.latent.scheduler``). When the optimizer
is built, the weights it owns are set to sign(w) (+1 where w = 0), so the network it trains
is the binary one from the first step; m is optimizer state (``momentum``), so checkpoints
hold it and a resumed run flips exactly as the unbroken one.
"""

from __future__ import annotations

import torch

from ..errors import ConfigError
from .groups import LATENT
from .registry import register_optimizer


class Bop(torch.optim.Optimizer):
    def __init__(self, params, gamma: float = 1e-4, threshold: float = 1e-8) -> None:
        if not 0.0 < gamma <= 1.0:
            raise ConfigError(f"bop: gamma must be in (0, 1], got {gamma}")
        if threshold < 0.0:
            raise ConfigError(f"bop: threshold must be >= 0, got {threshold}")
        super().__init__(params, {"lr": gamma, "threshold": threshold})
        with torch.no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    p.copy_(torch.where(p >= 0, 1.0, -1.0).to(p.dtype))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            gamma, tau = group["lr"], group["threshold"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["momentum"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                m = state["momentum"].mul_(1 - gamma).add_(p.grad, alpha=gamma)
                flip = (m.abs() > tau) & ((m > 0) == (p > 0))
                p.copy_(torch.where(flip, -p, p))
        return loss


@register_optimizer("bop")
def bop(param_groups, gamma: float = 1e-4, threshold: float = 1e-8) -> torch.optim.Optimizer:
    if any(g.get("name") not in (None, LATENT) for g in param_groups):
        raise ConfigError(
            "bop flips the signs of binary weights only; use it as optimizer.latent=bop "
            "(the run's optimizer trains the real-valued parameters)"
        )
    if any(g.get("weight_decay", 0.0) for g in param_groups):
        raise ConfigError("bop has no weight decay (its weights are +-1); set optimizer.latent_weight_decay=0")
    return Bop(param_groups, gamma=gamma, threshold=threshold)

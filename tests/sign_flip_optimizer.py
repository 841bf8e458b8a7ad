"""A Bop-shaped test optimizer, registered as ``sign_flip`` when imported (``plugins=[...]``).

Bop's rule (Helwegen et al., "Latent Weights Do Not Exist"), on the latent weights' signs,
with its adaptivity rate gamma as ``lr`` (so a schedule can drive it):
m <- (1 - lr) m + lr g; flip w where |m| > threshold and sign(m) == sign(w).
Its momentum is optimizer state, so a resume that lost it would flip other weights.
"""

import torch

from bnn_lab.optim import OPTIMIZERS, register_optimizer


class SignFlip(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 1e-3, threshold: float = 1e-6) -> None:
        super().__init__(params, {"lr": lr, "threshold": threshold})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["momentum"] = torch.zeros_like(p)
                m = state["momentum"].mul_(1 - group["lr"]).add_(p.grad, alpha=group["lr"])
                flip = (m.abs() > group["threshold"]) & (torch.sign(m) == torch.sign(p))
                p.copy_(torch.where(flip, -p, p))


if "sign_flip" not in OPTIMIZERS:
    register_optimizer("sign_flip")(SignFlip)

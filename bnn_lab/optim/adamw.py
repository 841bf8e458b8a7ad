"""``adamw``: AdamW (Loshchilov and Hutter, "Decoupled Weight Decay Regularization"): Adam
whose weight decay shrinks the weights directly, w <- w - lr * wd * w, instead of passing
through the moment estimates."""

import torch

from .registry import register_optimizer


@register_optimizer("adamw")
def adamw(param_groups, **options) -> torch.optim.Optimizer:
    return torch.optim.AdamW(param_groups, **options)

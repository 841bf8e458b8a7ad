"""``adam``: Adam (Kingma and Ba, 2015); per-parameter steps from running moments of the
gradient, m / (sqrt(v) + eps); L2 weight decay added to the gradient."""

import torch

from .registry import register_optimizer


@register_optimizer("adam")
def adam(param_groups, **options) -> torch.optim.Optimizer:
    return torch.optim.Adam(param_groups, **options)

"""``sgd``: stochastic gradient descent, with (Nesterov) momentum and L2 weight decay."""

import torch

from .registry import register_optimizer


@register_optimizer("sgd")
def sgd(param_groups, **options) -> torch.optim.Optimizer:
    return torch.optim.SGD(param_groups, **options)

"""The small binarized net that the precision, layout and compile tests share: binary conv ->
BN -> hardtanh -> binary conv -> classifier (kept in full precision), so that the second
layer's estimators receive the activations of the first."""

from __future__ import annotations

import torch
from torch import nn

from bnn_lab.surgery import binarize
from bnn_lab.training.callbacks import estimator_modules


def set_progress(net: nn.Module, p: float) -> None:
    for m in estimator_modules(net):
        m.set_progress(p)


def small_binary_net(estimator, progress: float | None = None, convs: int = 2) -> nn.Module:
    """``estimator``: a name or a spec for ``binarize``; ``convs`` binary convs, each after the
    first behind BN -> hardtanh."""
    torch.manual_seed(0)
    layers = [nn.Conv2d(4, 8, 3, bias=False)]
    for _ in range(convs - 1):
        layers += [nn.BatchNorm2d(8), nn.Hardtanh(), nn.Conv2d(8, 8, 3, padding=1, bias=False)]
    net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(8 * 6 * 6, 10))
    binarize(net, estimator, {"keep_first": False, "keep_last": True})
    if progress is not None:
        set_progress(net, progress)
    return net.train()

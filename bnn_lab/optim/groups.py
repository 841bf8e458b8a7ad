"""The two parameter groups of a run: latent binary weights (marked ``_bnn_latent`` by the
surgery pass) and the rest (full-precision layers, BN, scales, estimator parameters)."""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

REAL, LATENT = "real", "latent_binary"


def param_groups(model: nn.Module, weight_decay: float, latent_weight_decay: float) -> list[dict]:
    latent, other = [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (latent if getattr(p, "_bnn_latent", False) else other).append(p)
    groups = [{"params": other, "weight_decay": weight_decay, "name": REAL}]
    if latent:
        groups.append({"params": latent, "weight_decay": latent_weight_decay, "name": LATENT})
    return groups


def latent_parameters(modules: Iterable[nn.Module]) -> list[torch.Tensor]:
    return [p for m in modules for p in m.parameters(recurse=False) if getattr(p, "_bnn_latent", False)]

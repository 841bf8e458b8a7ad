"""Optimizers and LR schedules (the ``optimizer`` and ``scheduler`` config groups).

Latent binary weights (marked by the surgery pass) get their own parameter group with
weight decay ``latent_weight_decay`` (0 by default: decay pulls latent weights to 0, where
their sign flips at random).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, Callable

import torch
from torch import nn

from ..errors import ConfigError

_OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
}


def optimizer_names() -> list[str]:
    return sorted(_OPTIMIZERS)


def param_groups(model: nn.Module, weight_decay: float, latent_weight_decay: float) -> list[dict]:
    latent, other = [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (latent if getattr(p, "_bnn_latent", False) else other).append(p)
    groups = [{"params": other, "weight_decay": weight_decay, "name": "real"}]
    if latent:
        groups.append({"params": latent, "weight_decay": latent_weight_decay, "name": "latent_binary"})
    return groups


def build_optimizer(model: nn.Module, cfg: Mapping[str, Any]) -> torch.optim.Optimizer:
    cfg = dict(cfg)
    name = cfg.pop("name")
    if name not in _OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {name!r}; valid: {', '.join(optimizer_names())}")
    wd = cfg.pop("weight_decay", 0.0)
    latent_wd = cfg.pop("latent_weight_decay", 0.0)
    cfg.pop("clip_latent", None)  # handled by the LatentClip callback
    return _OPTIMIZERS[name](param_groups(model, wd, latent_wd), **cfg)


def warmup_cosine(total_steps: int, warmup_steps: int, min_factor: float) -> Callable[[int], float]:
    """Linear warm-up to the base LR, then cosine decay to ``min_factor`` x base LR."""

    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        t = min(max(step - warmup_steps, 0) / max(total_steps - warmup_steps, 1), 1.0)
        return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * t))

    return factor


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: Mapping[str, Any], total_steps: int, steps_per_epoch: int):
    cfg = dict(cfg)
    name = cfg.pop("name")
    if name == "none":
        return None
    if name == "cosine":
        warmup = int(round(cfg.get("warmup_epochs", 0.0) * steps_per_epoch))
        fn = warmup_cosine(total_steps, warmup, cfg.get("min_lr_factor", 0.0))
        return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)
    raise ConfigError(f"unknown scheduler {name!r}; valid: cosine, none")


def latent_parameters(modules: Iterable[nn.Module]) -> list[torch.Tensor]:
    return [p for m in modules for p in m.parameters(recurse=False) if getattr(p, "_bnn_latent", False)]

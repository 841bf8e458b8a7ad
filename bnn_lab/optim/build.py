"""The optimizer and LR schedule of a run (the ``optimizer`` and ``scheduler`` config groups).

Latent binary weights get their own parameter group with weight decay
``latent_weight_decay`` (0 by default: decay pulls latent weights to 0, where their sign
flips at random). ``optimizer.latent`` (a mapping with ``name``, the optimizer's options and
an optional ``scheduler``) gives that group an optimizer and a schedule of its own (Bop-like
optimizers of the signs, a different LR); the two are then one ``GroupedOptimizer`` and one
``LambdaLR`` with a factor per group, so checkpoints, resume and DDP see a single optimizer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from ..schedulers import SCHEDULERS
from .grouped import GroupedOptimizer
from .groups import LATENT, param_groups
from .registry import OPTIMIZERS

# keys of the optimizer group that are not options of the optimizer itself
_RUN_KEYS = ("name", "weight_decay", "latent_weight_decay", "clip_latent", "latent")


def _options(cfg: Mapping[str, Any], *skip: str) -> dict[str, Any]:
    return {k: v for k, v in cfg.items() if k not in skip}


def _latent(cfg: Mapping[str, Any]) -> dict[str, Any] | None:
    """``optimizer.latent`` as a mapping: a bare name (``optimizer.latent=bop``) is ``{name: bop}``."""
    latent = cfg.get("latent")
    if not latent:
        return None
    return {"name": latent} if isinstance(latent, str) else dict(latent)


def build_optimizer(model: nn.Module, cfg: Mapping[str, Any]) -> torch.optim.Optimizer:
    cfg = dict(cfg)
    groups = param_groups(model, cfg.get("weight_decay", 0.0), cfg.get("latent_weight_decay", 0.0))
    latent = _latent(cfg)
    real = [g for g in groups if g["name"] != LATENT]
    if not latent or len(real) == len(groups):
        return _scale_lr(OPTIMIZERS.build(cfg["name"], groups, **_options(cfg, *_RUN_KEYS)))
    if "name" not in latent:
        raise ConfigError(f"optimizer.latent needs a name; valid optimizers: {', '.join(OPTIMIZERS.names())}")
    main = OPTIMIZERS.build(cfg["name"], real, **_options(cfg, *_RUN_KEYS))
    side = OPTIMIZERS.build(latent["name"], groups[len(real) :], **_options(latent, "name", "scheduler"))
    return _scale_lr(GroupedOptimizer([main, side]))


def _scale_lr(opt: torch.optim.Optimizer) -> torch.optim.Optimizer:
    for group in opt.param_groups:
        if "lr_factor" in group:
            group["lr"] = group["lr"] * group["lr_factor"]
    return opt


def _constant(step: int) -> float:
    return 1.0


def build_schedule(cfg: Mapping[str, Any], total_steps: int, steps_per_epoch: int):
    cfg = dict(cfg)
    return SCHEDULERS.build(cfg.pop("name"), total_steps, steps_per_epoch, **cfg)


def configure_optimizer(
    model: nn.Module, optimizer: Mapping[str, Any], scheduler: Mapping[str, Any], total_steps: int, steps_per_epoch: int
):
    """``(optimizer, LambdaLR or None)``: the latent group follows ``optimizer.latent.scheduler``
    when set, every other group ``scheduler``."""
    opt = build_optimizer(model, optimizer)
    latent_schedule = (_latent(optimizer) or {}).get("scheduler") or scheduler
    factors = [
        build_schedule(latent_schedule if g.get("name") == LATENT else scheduler, total_steps, steps_per_epoch)
        for g in opt.param_groups
    ]
    if all(f is None for f in factors):
        return opt, None
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, [f or _constant for f in factors])

"""The parameter groups of a run: latent binary weights (marked ``_bnn_latent`` by the
surgery pass) and the rest (full-precision layers, BN, scales, estimator parameters).

A real-valued parameter marked ``_bnn_lr_factor = f`` (a method's own parameter that trains
at f times the run's learning rate, e.g. RBONN's recurrent step size) gets a group of its
own with ``lr_factor`` f; :func:`~bnn_lab.optim.build.build_optimizer` multiplies that
group's ``lr`` by it, and the schedule scales it like the others."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

REAL, LATENT = "real", "latent_binary"


def param_groups(model: nn.Module, weight_decay: float, latent_weight_decay: float) -> list[dict]:
    latent, other, scaled = [], [], {}
    for p in model.parameters():
        if not p.requires_grad:
            continue
        if getattr(p, "_bnn_latent", False):
            latent.append(p)
        elif getattr(p, "_bnn_lr_factor", None) is not None:
            scaled.setdefault(float(p._bnn_lr_factor), []).append(p)
        else:
            other.append(p)
    groups = [{"params": other, "weight_decay": weight_decay, "name": REAL}]
    groups += [{"params": ps, "weight_decay": weight_decay, "name": REAL, "lr_factor": f} for f, ps in scaled.items()]
    if latent:
        groups.append({"params": latent, "weight_decay": latent_weight_decay, "name": LATENT})
    return groups


def latent_parameters(modules: Iterable[nn.Module]) -> list[torch.Tensor]:
    return [p for m in modules for p in m.parameters(recurse=False) if getattr(p, "_bnn_latent", False)]

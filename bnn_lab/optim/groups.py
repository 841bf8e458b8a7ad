"""The parameter groups of a run: latent binary weights and the rest (full-precision layers, BN,
scales, estimator parameters), from what each module declares
(:class:`~bnn_lab.layers.param_roles.ParameterRoles`): a binary layer's ``latent_parameters()``,
and a module's ``lr_factors()``, parameters that train at f times the run's learning rate (e.g.
RBONN's recurrent step size) in a group of their own with ``lr_factor`` f;
:func:`~bnn_lab.optim.build.build_optimizer` multiplies that group's ``lr`` by it, and the
schedule scales it like the others."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from ..layers.param_roles import ParameterRoles

REAL, LATENT = "real", "latent_binary"


def latent_parameters(modules: Iterable[nn.Module]) -> list[torch.Tensor]:
    """The latent binary weights that ``modules`` declare, each once."""
    found = {id(p): p for m in modules if isinstance(m, ParameterRoles) for p in m.latent_parameters()}
    return list(found.values())


def lr_factors(modules: Iterable[nn.Module]) -> dict[int, float]:
    """id(parameter) -> learning-rate factor, as ``modules`` declare them."""
    return {id(p): float(f) for m in modules if isinstance(m, ParameterRoles) for p, f in m.lr_factors().items()}


def param_groups(model: nn.Module, weight_decay: float, latent_weight_decay: float) -> list[dict]:
    latent_ids = {id(p) for p in latent_parameters(model.modules())}
    factors = lr_factors(model.modules())
    latent, other, scaled = [], [], {}
    for p in model.parameters():
        if not p.requires_grad:
            continue
        if id(p) in latent_ids:
            latent.append(p)
        elif id(p) in factors:
            scaled.setdefault(factors[id(p)], []).append(p)
        else:
            other.append(p)
    groups = [{"params": other, "weight_decay": weight_decay, "name": REAL}]
    groups += [{"params": ps, "weight_decay": weight_decay, "name": REAL, "lr_factor": f} for f, ps in scaled.items()]
    if latent:
        groups.append({"params": latent, "weight_decay": latent_weight_decay, "name": LATENT})
    return groups

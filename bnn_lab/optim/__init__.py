"""Optimizers (the ``optimizer`` config group), one file each, and how a run builds its
optimizer and schedule from them (docs/extending.md)."""

from . import adam, adamw, bop, sgd  # noqa: F401  (registration)
from .build import build_optimizer, build_schedule, configure_optimizer
from .grouped import GroupedOptimizer
from .groups import LATENT, REAL, latent_parameters, param_groups
from .registry import OPTIMIZERS, optimizer_names, register_optimizer

__all__ = [
    "GroupedOptimizer",
    "LATENT",
    "OPTIMIZERS",
    "REAL",
    "build_optimizer",
    "build_schedule",
    "configure_optimizer",
    "latent_parameters",
    "optimizer_names",
    "param_groups",
    "register_optimizer",
]

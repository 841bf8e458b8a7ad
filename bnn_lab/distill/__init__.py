"""Distillation (the ``distill`` config group): named presets that give a run a teacher and
the loss terms it teaches with (kd, attention; bnn_lab/losses/)."""

from ..losses import FeatureCapture, attention_loss, attention_map, default_points, kd_loss, select_points
from . import kd, none, real2bin  # noqa: F401  (registration)
from .base import Distiller
from .registry import build_distiller, distiller_names, register_distiller

__all__ = [
    "Distiller",
    "FeatureCapture",
    "attention_loss",
    "attention_map",
    "build_distiller",
    "default_points",
    "distiller_names",
    "kd_loss",
    "register_distiller",
    "select_points",
]

"""Distillation (the ``distill`` config group): KD, Real-to-Binary attention matching, and
the hooks and losses behind them."""
from .hooks import FeatureCapture, default_points, select_points
from .losses import attention_loss, attention_map, kd_loss
from .base import Distiller
from . import kd, none, real2bin  # noqa: F401  (registration)
from .registry import build_distiller, distiller_names, register_distiller

__all__ = ["Distiller", "FeatureCapture", "attention_loss", "attention_map", "build_distiller", "default_points",
           "distiller_names", "kd_loss", "register_distiller", "select_points"]

"""Loss terms (the ``loss`` config group): the training loss is ``loss.ce`` x cross-entropy
plus the sum of the configured terms, each ``weight x term(inputs)``; each term is one file
that registers itself here (docs/extending.md)."""

from . import attention, consecutive_kd, kd, lcr, rbd  # noqa: F401  (registration)
from .attention import attention_loss, attention_map
from .base import LossInputs, LossTerm
from .build import build_term, build_terms, merge_specs
from .features import FeatureCapture, default_points, select_points
from .kd import kd_loss
from .lcr import lcr_loss, retention_matrix, spectral_norm
from .rbd import rbd_loss
from .registry import TERMS, register_term, term_names

__all__ = [
    "FeatureCapture",
    "LossInputs",
    "LossTerm",
    "TERMS",
    "attention_loss",
    "attention_map",
    "build_term",
    "build_terms",
    "default_points",
    "kd_loss",
    "lcr_loss",
    "merge_specs",
    "rbd_loss",
    "register_term",
    "retention_matrix",
    "select_points",
    "spectral_norm",
    "term_names",
]

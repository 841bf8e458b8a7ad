"""The assembly layer: data, network and precision from a composed configuration, shared by
training, export, evaluation and the benchmarks (none of which imports another for it)."""

from .data import build_data
from .model import build_model
from .precision import (
    DEFAULT,
    PRECISIONS,
    check_precision,
    config_precision,
    stage_precision,
    stored_precision,
)
from .trained import find_best_checkpoint, load_trained

__all__ = [
    "DEFAULT",
    "PRECISIONS",
    "build_data",
    "build_model",
    "check_precision",
    "config_precision",
    "find_best_checkpoint",
    "load_trained",
    "stage_precision",
    "stored_precision",
]

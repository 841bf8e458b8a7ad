"""Precision modes: the one key ``precision`` (and a stage's ``precision``) names which parts
of the binary layers are binary. Old spellings are mapped onto it: ``fp=true`` is
``precision=fp``, ``binarize.policy.weights_only=true`` is ``precision=bwn``, a stage's
``mode:`` is its ``precision:``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError

DEFAULT = "1w1a"
# mode -> (input mode, weight mode) of the binary layers; "fp" builds no binary layer
PRECISIONS: dict[str, tuple[str, str] | None] = {
    "fp": None,
    "soft": ("soft", "real"),  # real weights, tanh activations (Real-to-Binary stage 2)
    "binary_act": ("binary", "real"),  # binary activations, real weights (stage 3)
    "bwn": ("real", "binary"),  # binary weights, real activations
    "1w1a": ("binary", "binary"),
}


def check_precision(mode: Any, key: str = "precision") -> str:
    if mode not in PRECISIONS:
        raise ConfigError(f"unknown {key} {mode!r}; valid precisions: {', '.join(PRECISIONS)}")
    return mode


def config_precision(cfg: Mapping[str, Any]) -> str:
    """The precision a plain (single-stage) run asks for: ``precision``, or the old spellings
    ``fp=true`` / ``binarize.policy.weights_only=true`` (which must then agree with it)."""
    precision = check_precision(cfg.get("precision") or DEFAULT)
    policy = (cfg.get("binarize") or {}).get("policy") or {}
    old = (
        ("fp", "fp=true")
        if cfg.get("fp")
        else ("bwn", "binarize.policy.weights_only=true")
        if policy.get("weights_only")
        else None
    )
    if old is None:
        return precision
    if precision not in (DEFAULT, old[0]):
        raise ConfigError(
            f"{old[1]} (the old spelling of precision={old[0]}) contradicts precision={precision}; set precision alone"
        )
    return old[0]


def stage_precision(i: int, raw: dict[str, Any]) -> str:
    """A stage's ``precision`` (``mode`` is the old spelling); removes both from ``raw``."""
    mode, precision = raw.pop("mode", None), raw.pop("precision", None)
    if mode is not None and precision is not None and mode != precision:
        raise ConfigError(f"stage {i} sets mode={mode} and precision={precision}; set precision alone")
    value = precision if precision is not None else mode
    if value is None:
        raise ConfigError(f"stage {i} needs precision: one of {', '.join(PRECISIONS)}")
    return check_precision(value, f"stage {i} precision")

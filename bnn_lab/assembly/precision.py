"""Precisions: the one key ``precision`` (and a stage's ``precision:``) names which parts of the
binary layers are binary. The spellings of earlier versions (``fp=true``,
``binarize.policy.weights_only=true``, a stage's ``mode:``) are refused in one line that names
``precision`` (:mod:`.old_spellings`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError
from .old_spellings import PRECISION_SPELLINGS, lookup

DEFAULT = "1w1a"
# precision -> (input mode, weight mode) of the binary layers; "fp" builds no binary layer
PRECISIONS: dict[str, tuple[str, str] | None] = {
    "fp": None,
    "soft": ("soft", "real"),  # real weights, tanh activations (Real-to-Binary stage 2)
    "binary_act": ("binary", "real"),  # binary activations, real weights (stage 3)
    "bwn": ("real", "binary"),  # binary weights, real activations
    "1w1a": ("binary", "binary"),
}


def check_precision(precision: Any, key: str = "precision") -> str:
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown {key} {precision!r}; valid precisions: {', '.join(PRECISIONS)}")
    return precision


def config_precision(cfg: Mapping[str, Any]) -> str:
    """The precision a plain (single-stage) run asks for."""
    return check_precision(cfg.get("precision") or DEFAULT)


def stored_precision(meta: Mapping[str, Any], default: str | None = None) -> str | None:
    """The precision that a checkpoint's or packed file's metadata records (under ``mode`` in
    files that earlier versions wrote)."""
    return meta.get("precision", meta.get("mode", default))


def saved_precision(conf: Mapping[str, Any]) -> str:
    """The precision of a saved configuration, those that earlier versions wrote included (where
    an old spelling, ``fp: true`` or ``binarize.policy.weights_only: true``, said it)."""
    for key, new in PRECISION_SPELLINGS.items():
        if lookup(conf, key):
            return new.split("=")[1]
    return conf.get("precision") or DEFAULT


def stage_precision(i: int, raw: dict[str, Any]) -> str:
    """A stage's ``precision``; removes it from ``raw``."""
    if "mode" in raw:
        raise ConfigError(f"stage {i} sets mode: {raw['mode']}; the key is precision: write precision: {raw['mode']}")
    precision = raw.pop("precision", None)
    if precision is None:
        raise ConfigError(f"stage {i} needs precision: one of {', '.join(PRECISIONS)}")
    return check_precision(precision, f"stage {i} precision")

"""Builds the pieces of a run from the composed config."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from .. import models
from ..data import build_datamodule
from ..errors import ConfigError
from ..surgery import SurgeryReport, binarize

# precision modes: (input mode, weight mode) of the binary layers; "fp" builds no binary layer
MODES: dict[str, tuple[str, str] | None] = {
    "fp": None,
    "soft": ("soft", "real"),          # real weights, tanh activations (Real-to-Binary stage 2)
    "binary_act": ("binary", "real"),  # binary activations, real weights (stage 3)
    "bwn": ("real", "binary"),         # binary weights, real activations
    "1w1a": ("binary", "binary"),
}


def build_data(cfg: Mapping[str, Any]):
    """The data module of ``cfg.data`` (``module``, else ``name``, picks it; ``name`` names the
    data in the run), with its files already checked: a data mistake is reported before the
    trainer, the logger and the model exist."""
    data = dict(cfg["data"])
    name = data.pop("name")
    dm = build_datamodule(data.pop("module", None) or name, **data)
    dm.name = name
    dm.check()
    return dm


def config_mode(cfg: Mapping[str, Any]) -> str:
    """The precision mode a plain (single-stage) run asks for."""
    if cfg.get("fp", False):
        return "fp"
    return "bwn" if cfg["binarize"]["policy"].get("weights_only") else "1w1a"


def build_model(
    cfg: Mapping[str, Any], in_chans: int, num_classes: int, img_size: int, mode: str | None = None,
) -> tuple[nn.Module, SurgeryReport | None]:
    """The timm model of ``cfg.arch``, converted for ``mode`` (default: what cfg asks for)."""
    mode = mode or config_mode(cfg)
    if mode not in MODES:
        raise ConfigError(f"unknown precision mode {mode!r}; valid: {', '.join(MODES)}")
    arch = cfg["arch"]
    model = models.create(
        arch["name"], in_chans=in_chans, num_classes=num_classes, input_size=img_size,
        small_stem=arch.get("small_stem"), **dict(arch.get("kwargs") or {}),
    )
    if MODES[mode] is None:
        return model, None
    input_mode, weight_mode = MODES[mode]
    policy = dict(cfg["binarize"]["policy"])
    policy["weights_only"] = False  # the mode says it
    report = binarize(
        model, estimator=dict(cfg["estimator"]), policy=policy, scale=cfg["binarize"]["scale"],
        input_mode=input_mode, weight_mode=weight_mode, group_weights=cfg["binarize"].get("group_weights", True),
    )
    return model, report

"""Builds the pieces of a run from the composed config."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from .. import models
from ..data import build_datamodule
from ..surgery import SurgeryReport, binarize


def build_data(cfg: Mapping[str, Any]):
    data = dict(cfg["data"])
    return build_datamodule(data.pop("name"), **data)


def build_model(cfg: Mapping[str, Any], in_chans: int, num_classes: int, img_size: int) -> tuple[nn.Module, SurgeryReport | None]:
    """The timm model of ``cfg.arch``, binarized by ``cfg.binarize`` unless ``cfg.fp``."""
    arch = cfg["arch"]
    model = models.create(
        arch["name"], in_chans=in_chans, num_classes=num_classes, input_size=img_size,
        small_stem=arch.get("small_stem"), **dict(arch.get("kwargs") or {}),
    )
    if cfg.get("fp", False):
        return model, None
    report = binarize(
        model,
        estimator=dict(cfg["estimator"]),
        policy=dict(cfg["binarize"]["policy"]),
        scale=cfg["binarize"]["scale"],
    )
    return model, report

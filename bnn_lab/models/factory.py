"""``create``: every architecture comes from ``timm.create_model``."""

from __future__ import annotations

import logging

import timm
from torch import nn

from ..errors import ConfigError
from .stem import shrink_stem

log = logging.getLogger(__name__)


def create(
    name: str,
    in_chans: int,
    num_classes: int,
    input_size: int,
    small_stem: bool | None = None,
    **kwargs,
) -> nn.Module:
    """timm model ``name`` for ``in_chans`` x ``input_size`` images and ``num_classes`` outputs.

    ``small_stem`` (default: for inputs up to 64 pixels) replaces the stem by a 3x3 stride-1
    conv without max-pool.
    """
    if not timm.is_model(name):
        close = timm.list_models(f"*{name}*")[:10]
        hint = f"; similar: {', '.join(close)}" if close else ""
        raise ConfigError(f"unknown timm model {name!r}{hint}")
    model = timm.create_model(name, pretrained=False, in_chans=in_chans, num_classes=num_classes, **kwargs)
    if small_stem is None:
        small_stem = input_size <= 64
    if small_stem:
        for change in shrink_stem(model):
            log.info("small stem: %s", change)
    return model

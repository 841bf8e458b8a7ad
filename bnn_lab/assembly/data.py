"""The data module of a configuration (``cfg.data``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..data import build_datamodule


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

"""The data module of a configuration (``cfg.data``)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..data import build_datamodule


def build_data(cfg: Mapping[str, Any]):
    data = dict(cfg["data"])
    return build_datamodule(data.pop("name"), **data)

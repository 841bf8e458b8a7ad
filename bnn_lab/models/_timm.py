"""Helpers for models registered into timm's registry."""
from __future__ import annotations

# create_model passes these to every entrypoint; our constructors do not take them
_FACTORY_KEYS = ("pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")


def strip_factory_kwargs(kwargs: dict) -> dict:
    return {k: v for k, v in kwargs.items() if k not in _FACTORY_KEYS}

"""Helpers for models registered into timm's registry."""

from __future__ import annotations

import torch
from torch import nn

# create_model passes these to every entrypoint; our constructors do not take them
_FACTORY_KEYS = ("pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")


def strip_factory_kwargs(kwargs: dict) -> dict:
    return {k: v for k, v in kwargs.items() if k not in _FACTORY_KEYS}


class ClassifierHead:
    """timm's classifier interface for the families registered here.

    The model defines ``forward_features`` and sets ``global_pool``, ``drop``, ``fc`` and
    ``num_features``; this mixin adds ``get_classifier``, ``reset_classifier``,
    ``forward_head`` and ``forward``, so the surgery pass finds the classifier the same way
    as in timm's own models.
    """

    global_pool: nn.Module
    drop: nn.Module
    fc: nn.Linear
    num_features: int
    num_classes: int

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.global_pool(x).flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

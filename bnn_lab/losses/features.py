"""Forward hooks that capture module outputs for the loss terms that read features."""

from __future__ import annotations

import re

import torch
from torch import nn

from ..errors import ConfigError

# residual / dense blocks of the timm and bnn-lab families
_BLOCK_TYPES = re.compile(r"(Block|Bottleneck|Unit|DenseLayer)$")


def default_points(model: nn.Module) -> list[str]:
    """Names of every residual / dense block, outermost only, in forward order."""
    names: list[str] = []
    for name, m in model.named_modules():
        if name and _BLOCK_TYPES.search(type(m).__name__) and not any(name.startswith(n + ".") for n in names):
            names.append(name)
    return names


def select_points(model: nn.Module, patterns: list[str] | None) -> list[str]:
    """Block names chosen by exact name or regular expression (default: every block)."""
    if not patterns:
        points = default_points(model)
        if not points:
            raise ConfigError(
                "no residual/dense blocks found for attention matching; name the layers (loss.attention.layers)"
            )
        return points
    names = [n for n, _ in model.named_modules() if n]
    chosen = [n for n in names if any(n == p or re.fullmatch(p, n) for p in patterns)]
    missing = [p for p in patterns if not any(n == p or re.fullmatch(p, n) for n in names)]
    if missing:
        raise ConfigError(f"layers entries match no module: {', '.join(missing)}")
    return chosen


class FeatureCapture:
    """Keeps the latest output of each named module while attached."""

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        self.model, self.names = model, list(names)
        self.outputs: dict[str, torch.Tensor] = {}
        self.handles: list = []

    def attach(self) -> "FeatureCapture":
        if not self.handles:
            modules = dict(self.model.named_modules())
            for n in self.names:
                self.handles.append(modules[n].register_forward_hook(self._hook(n)))
        return self

    def _hook(self, name: str):
        def hook(module, args, output):
            self.outputs[name] = output

        return hook

    def detach(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()
        self.outputs.clear()

    def features(self) -> list[torch.Tensor]:
        return [self.outputs[n] for n in self.names]

    def __enter__(self) -> "FeatureCapture":
        return self.attach()

    def __exit__(self, *exc) -> None:
        self.detach()

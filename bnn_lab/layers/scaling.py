"""Output scaling of binary layers (``binarize.scale``).

- ``none``: no scaling (BinaryDenseNet shows it is not needed from scratch).
- ``xnor``: per-output-channel mean |W| of the latent weights, detached (XNOR-Net).
- ``learned``: a learned per-output-channel alpha (XNOR++), initialised to mean |W|.
- ``gating``: Real-to-Binary's data-driven channel rescaling: the output times
  sigmoid(W2 relu(W1 GAP(x))) computed from the real-valued input x of the layer (before
  binarization); W1: C_in -> C_in / 8, W2: C_in / 8 -> C_out, no biases (about 1 % extra
  FLOPs).

Every scale is a :class:`Scale`, called as ``scale(out, weight, x)`` with the layer's output,
its latent weight and its real-valued input. A new scale subclasses it, is registered with
``@register_scale(name)`` in its own file and imported by ``bnn_lab/layers/__init__.py``
(docs/extending.md); :class:`Scale` lists the hooks it may override.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError, NoPackedForm
from ..registry import Registry
from .param_roles import ParameterRoles

SCALES: Registry = Registry("binarize.scale", "scales")
register_scale = SCALES.register
scale_names = SCALES.names


class Scale(ParameterRoles, nn.Module):
    """Base of the output scales; the hooks, with their defaults:

    - ``forward(out, weight, x)``: the layer's output times the scale (abstract);
    - ``packed_scale(weight)``: what a packed layer applies to its exact integer product: None
      (nothing), a per-output-channel factor, or a module called as ``module(out, None, x)``
      (data-dependent scales); by default :class:`~bnn_lab.errors.NoPackedForm`;
    - ``changes_latent`` / ``latent_weight(weight)``: a scale that changes what the layer
      binarizes (RBONN) sets ``changes_latent = True`` and returns that weight; the layer then
      binarizes it alone, outside the weight group;
    - ``lr_factors()`` (:class:`~bnn_lab.layers.param_roles.ParameterRoles`).
    """

    changes_latent: bool = False

    def packed_scale(self, weight: torch.Tensor) -> torch.Tensor | nn.Module | None:
        raise NoPackedForm(f"scale {type(self).__name__} has no packed form")

    def latent_weight(self, weight: torch.Tensor) -> torch.Tensor:
        return weight


def build_scale(spec: str | Mapping[str, Any], layer: nn.Module) -> Scale:
    """Scale module for a Conv2d / Linear ``layer``; ``spec`` is a name or ``{name, <options>}``
    (the options go to the scale's constructor after the layer)."""
    options = dict(spec) if isinstance(spec, Mapping) else {"name": spec}
    name = options.pop("name")
    scale = SCALES.build(name, layer, **options)
    if not isinstance(scale, Scale):
        raise ConfigError(f"scale {name!r} built a {type(scale).__name__}: a scale subclasses bnn_lab.layers.Scale")
    return scale


def _channel_shape(weight: torch.Tensor) -> tuple[int, ...]:
    # (1, O, 1, 1) for conv outputs (N, O, H, W); (O,) for linear outputs (..., O)
    return (1, weight.shape[0], 1, 1) if weight.dim() == 4 else (weight.shape[0],)


class NoScale(Scale):
    def forward(self, out: torch.Tensor, weight: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        return out

    def packed_scale(self, weight: torch.Tensor) -> None:
        return None


class XnorScale(Scale):
    def forward(self, out: torch.Tensor, weight: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        return out * self.packed_scale(weight).view(_channel_shape(weight))

    def packed_scale(self, weight: torch.Tensor) -> torch.Tensor:
        return weight.detach().abs().flatten(1).mean(1)


class LearnedScale(Scale):
    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.alpha = nn.Parameter(layer.weight.detach().abs().flatten(1).mean(1).clone())

    def forward(self, out: torch.Tensor, weight: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        return out * self.alpha.view(_channel_shape(weight))

    def packed_scale(self, weight: torch.Tensor) -> torch.Tensor:
        return self.alpha.detach()


class GatingScale(Scale):
    def __init__(self, layer: nn.Module, reduction: int = 8) -> None:
        super().__init__()
        c_out = layer.weight.shape[0]
        c_in = layer.in_channels if isinstance(layer, nn.Conv2d) else layer.in_features
        hidden = max(c_in // reduction, 1)
        self.fc1 = nn.Linear(c_in, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, c_out, bias=False)

    def forward(self, out: torch.Tensor, weight: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        if x is None:
            raise ValueError("gating needs the layer's real-valued input")
        # global average pooling per sample: over H, W for convs, over tokens for (N, L, C)
        pooled = x.mean(dim=(2, 3)) if x.dim() == 4 else x.mean(dim=1) if x.dim() == 3 else x
        gate = torch.sigmoid(self.fc2(torch.relu(self.fc1(pooled))))  # (N, C_out)
        if out.dim() == 4:
            return out * gate[:, :, None, None]
        return out * (gate[:, None, :] if out.dim() == 3 else gate)

    def packed_scale(self, weight: torch.Tensor) -> nn.Module:
        return copy.deepcopy(self)  # the gate reads the layer's real input: it stays a float module


register_scale("none")(lambda layer: NoScale())
register_scale("xnor")(lambda layer: XnorScale())
register_scale("learned")(LearnedScale)
register_scale("gating")(GatingScale)

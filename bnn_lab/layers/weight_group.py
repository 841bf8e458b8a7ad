"""Binarize the weights of all the binary layers of a model together, once per forward pass.

Each binary layer binarizes its own latent weight when it runs. For estimators whose weight
path is many small ops per layer (FDA's noise adaptation: about thirty per layer and step,
forward and backward), the fixed cost per op dominates on CPU. A :class:`WeightGroup`
hooks the model's own ``forward``: before it runs, the weights of all layers whose estimator
gives a :meth:`group_key` are binarized together by the estimator class's
``binarize_group`` (layers with equal keys share one call; FDA does their elementwise part
in one pass over the concatenated weights). Each layer then takes its result instead of
calling its estimator; after the forward pass the results are dropped. A layer with a weight
normalization gives the group its normalized weight (``normalized_weight``).

Where there is no result, the layer binarizes on its own as before: the estimator called
directly, a submodule run outside the model's forward, code being compiled as a whole
(``compile=true``), estimators without a ``group_key`` or returning None (evaluation mode,
no noise). Values and gradients are the same either way: bit for bit when both run eagerly,
to float32 rounding where the grouped weights, larger than one layer's, take a compiled loop
(``tests/test_weight_group.py`` checks both).

The grouped autograd node runs once every layer's gradient has reached it, so all latent
weight gradients arrive at the end of the backward pass; under DDP their all-reduce then
cannot overlap the backward (``binarize.group_weights=false`` keeps each layer alone).
"""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import nn

from .binary import BinaryMixin


class WeightGroup:
    """The binary layers of one model (``layers``) whose weights are binarized together."""

    def __init__(self, layers: list[nn.Module]) -> None:
        self.layers = layers
        self.results: dict[int, torch.Tensor] | None = None
        self.handles: list = []

    def attach(self, model: nn.Module) -> None:
        self.handles = [
            model.register_forward_pre_hook(self._before),
            model.register_forward_hook(self._after, always_call=True),
        ]
        model._weight_group = self
        for layer in self.layers:
            layer._weight_group = self

    def detach(self, model: nn.Module) -> None:
        for handle in self.handles:
            handle.remove()
        model.__dict__.pop("_weight_group", None)
        for layer in self.layers:
            layer.__dict__.pop("_weight_group", None)

    def binarized(self, layer: nn.Module) -> torch.Tensor | None:
        """``layer``'s binarized weight from this forward pass, or None."""
        return None if self.results is None else self.results.get(id(layer))

    def _before(self, model: nn.Module, args) -> None:
        self.results = None if torch.compiler.is_compiling() else self.binarize()

    def _after(self, model: nn.Module, args, output) -> None:
        self.results = None

    def binarize(self) -> dict[int, torch.Tensor]:
        groups: dict[tuple, list[nn.Module]] = defaultdict(list)
        for layer in self.layers:
            if not layer.binary_weights or layer.scale.changes_latent:
                continue  # real weights; or a weight of its scale's making (BinaryMixin.binary_weight)
            key = layer.weight_estimator.group_key(layer.weight)
            if key is not None:
                groups[(type(layer.weight_estimator), key)].append(layer)
        results = {}
        for (cls, _), members in groups.items():
            weights = cls.binarize_group(
                [m.weight_estimator for m in members], [m.normalized_weight() for m in members]
            )
            results.update(zip(map(id, members), weights))
        return results


def attach_weight_group(model: nn.Module, enabled: bool = True) -> WeightGroup | None:
    """Group the binary layers of ``model`` (which of them binarize together is decided at
    each forward pass, from their estimators then), replacing an earlier group; None if
    there are none or not ``enabled`` (then only the earlier group is removed)."""
    old = model.__dict__.get("_weight_group")
    if old is not None:
        old.detach(model)
    layers = [m for m in model.modules() if isinstance(m, BinaryMixin)]
    if not layers or not enabled:
        return None
    group = WeightGroup(layers)
    group.attach(model)
    return group

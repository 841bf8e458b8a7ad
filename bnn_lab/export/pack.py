"""``pack_model``: a trained model with its binary layers replaced by packed ones."""
from __future__ import annotations

import copy
import dataclasses
import logging

import torch
from torch import nn

from ..estimators import SignEstimator
from ..kernels import pack_signs
from ..estimators.adabin import AdaBin
from ..estimators.rsign import RSign
from ..layers import BinaryConv2d, BinaryLinear, BinaryMixin
from ..layers.scaling import GatingScale, LearnedScale, NoScale, XnorScale
from .packed_layers import PackedBinaryConv2d, PackedBinaryLinear

log = logging.getLogger(__name__)


@dataclasses.dataclass
class PackReport:
    packed: list[str] = dataclasses.field(default_factory=list)
    kept_float: dict[str, str] = dataclasses.field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"packed {len(self.packed)} binary layers (1 bit per weight)"]
        lines += [f"  kept in float: {n} ({why})" for n, why in self.kept_float.items()]
        return "\n".join(lines)


def _why_not(layer: BinaryMixin) -> str | None:
    if not layer.binary_weights:
        return "real weights"
    if not layer.binary_inputs:
        return "real or soft inputs (BWN)"
    if isinstance(layer.input_estimator, AdaBin) or not isinstance(layer.input_estimator, SignEstimator):
        return f"input binarizer {type(layer.input_estimator).__name__} is not a sign with threshold"
    if isinstance(layer, BinaryConv2d) and layer.groups != 1:
        return "grouped convolution"
    return None


def _scale_parts(layer: BinaryMixin):
    scale = layer.scale
    if isinstance(scale, NoScale):
        return None, None
    if isinstance(scale, XnorScale):
        return layer.weight.detach().abs().flatten(1).mean(1), None
    if isinstance(scale, LearnedScale):
        return scale.alpha.detach(), None
    if isinstance(scale, GatingScale):
        return None, copy.deepcopy(scale)
    raise NotImplementedError(f"no packed form for scale {type(scale).__name__}")


@torch.no_grad()
def _pack_layer(layer: BinaryMixin, backend: str) -> nn.Module | None:
    w = layer.weight_estimator.eval()(layer.weight)
    if not bool(((w == 1) | (w == -1)).all()):
        return None
    bits = pack_signs(w.reshape(w.shape[0], -1))
    scale_vector, gate = _scale_parts(layer)
    est = layer.input_estimator
    threshold = est.threshold.detach() if isinstance(est, RSign) and est.threshold is not None else None
    if isinstance(layer, BinaryConv2d):
        return PackedBinaryConv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                                  layer.padding, layer.dilation, bits, layer.bias, scale_vector, threshold, gate,
                                  backend)
    return PackedBinaryLinear(layer.in_features, layer.out_features, bits, layer.bias, scale_vector, threshold,
                              gate, backend)


def pack_model(model: nn.Module, backend: str = "auto") -> tuple[nn.Module, PackReport]:
    """A copy of ``model`` (in eval mode) whose 1W1A layers hold packed weights and run on
    the binary kernels; the model itself is not changed. Layers that cannot be packed
    (BWN, AdaBin, soft or real stages) stay as they are and are listed in the report."""
    packed = copy.deepcopy(model).eval()
    report = PackReport()
    for name, layer in list(packed.named_modules()):
        if not isinstance(layer, (BinaryConv2d, BinaryLinear)):
            continue
        why = _why_not(layer)
        new = None if why else _pack_layer(layer, backend)
        if new is None:
            report.kept_float[name] = why or "weights not +-1 after binarization"
            continue
        parent_name, _, leaf = name.rpartition(".")
        setattr(packed.get_submodule(parent_name) if parent_name else packed, leaf, new)
        report.packed.append(name)
    return packed, report

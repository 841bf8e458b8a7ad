"""``pack_model``: a trained model with its binary layers replaced by packed ones.

A layer is packed from what its parts say about themselves through their declared hooks: the
input binarizer's ``packed_threshold()`` (sign(x - t), ``bnn_lab.estimators.Quantizer``) and the
scale's ``packed_scale(weight)`` (``bnn_lab.layers.Scale``), and the weight normalization's (the signs
are those of the normalized weight, its per-channel factor multiplies the scale:
``bnn_lab.layers.weight_norm``); a part that has no packed form raises
``NoPackedForm`` with the reason, and the layer stays in float. A new estimator or scale
brings its own packed form: nothing here names them.
"""

from __future__ import annotations

import copy
import dataclasses
import logging

import torch
from torch import nn

from ..errors import NoPackedForm
from ..estimators import Quantizer
from ..kernels import pack_signs
from ..layers import BinaryConv2d, BinaryLinear, BinaryMixin
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
    if isinstance(layer, BinaryConv2d) and layer.groups != 1:
        return "grouped convolution"
    return None


def packed_threshold(layer: BinaryMixin) -> torch.Tensor | None:
    """t of the layer's input binarization sign(x - t) (None: 0); raises NoPackedForm."""
    est = layer.input_estimator
    if not isinstance(est, Quantizer):
        raise NoPackedForm(f"input binarizer {type(est).__name__} is not a Quantizer (no packed_threshold)")
    return est.packed_threshold()


def packed_scale(layer: BinaryMixin) -> tuple[torch.Tensor | None, nn.Module | None]:
    """(per-channel factor, data-dependent scale module) of the layer's output; raises NoPackedForm."""
    form = layer.scale.packed_scale(layer.weight)  # Scale's default raises NoPackedForm
    factor = weight_norm_factor(layer)
    if form is None or isinstance(form, nn.Module):
        return factor, form
    return form.detach() if factor is None else form.detach() * factor, None


def weight_norm_factor(layer: BinaryMixin) -> torch.Tensor | None:
    """The weight normalization's per-output-channel factor (None: 1); raises NoPackedForm."""
    norm = layer.weight_norm
    if norm is None:
        return None
    factor = norm.packed_scale(layer.weight)
    if factor is not None and factor.shape != (layer.weight.shape[0],):
        raise NoPackedForm(
            f"weight normalization {type(norm).__name__} gives a factor of shape "
            f"{tuple(factor.shape)}, not one per output channel"
        )
    return None if factor is None else factor.detach()


@torch.no_grad()
def _pack_layer(layer: BinaryMixin, backend: str) -> nn.Module | None:
    w = layer.weight_estimator.eval()(layer.normalized_weight())
    if not bool(((w == 1) | (w == -1)).all()):
        return None
    bits = pack_signs(w.reshape(w.shape[0], -1))
    threshold = packed_threshold(layer)
    scale_vector, gate = packed_scale(layer)
    if isinstance(layer, BinaryConv2d):
        return PackedBinaryConv2d(
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,
            layer.stride,
            layer.padding,
            layer.dilation,
            bits,
            layer.bias,
            scale_vector,
            threshold,
            gate,
            backend,
        )
    return PackedBinaryLinear(
        layer.in_features, layer.out_features, bits, layer.bias, scale_vector, threshold, gate, backend
    )


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
        try:
            new = None if why else _pack_layer(layer, backend)
        except NoPackedForm as exc:
            why, new = str(exc), None
        if new is None:
            report.kept_float[name] = why or "weights not +-1 after binarization"
            continue
        parent_name, _, leaf = name.rpartition(".")
        setattr(packed.get_submodule(parent_name) if parent_name else packed, leaf, new)
        report.packed.append(name)
    return packed, report

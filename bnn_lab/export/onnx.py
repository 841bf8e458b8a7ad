"""ONNX export of a binary model in standard operators.

Each packed binary layer becomes what it computes, written with plain ONNX operators that any
runtime or converter reads:

    s = Where(GreaterOrEqual(Sub(x, t), 0), +1, -1)      input signs (sign(0) = +1; t: RSign)
    y = Conv(s, W) or MatMul(s, W^T),  W in {-1, +1}      the exact integer product, in float
    y = y * alpha (Mul) | gate(y, x) | + bias (Add)       the layer's scale and bias

ONNX's own Sign maps 0 to 0, hence the comparison. The +-1 weights are float initializers
(4 bytes a weight; the packed safetensors file keeps 1 bit). The rest of the network (stem,
BatchNorm, activations, pooling, classifier) exports as torch exports it. The integer product
of +-1 values is exact in float32 up to 2^24 terms; onnxruntime's float kernels (stem,
BatchNorm, activations) round differently from torch's, so an activation within that rounding of
a threshold can take the other sign: the predictions agree, the logits of almost every input too.
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..kernels import unpack_signs
from ..layers import BinaryMixin
from .pack import pack_model
from .packed_layers import PackedBinaryConv2d, PackedBinaryLinear

OPSET = 17


def _signs(x: torch.Tensor, threshold: torch.Tensor | None, shape) -> torch.Tensor:
    u = x if threshold is None else x - threshold.view(shape)
    return torch.where(u >= 0, 1.0, -1.0)


class _SignedLayer(nn.Module):
    """A packed layer's computation with +-1 float weights (the ONNX form)."""

    def __init__(self, packed: PackedBinaryConv2d | PackedBinaryLinear, weight_shape) -> None:
        super().__init__()
        signs = unpack_signs(packed.weight_bits, packed.k, dtype=torch.float32).reshape(weight_shape)
        self.register_buffer("weight", signs)
        for name in ("threshold", "scale", "bias"):
            value = getattr(packed, name)
            self.register_buffer(name, None if value is None else value.detach().clone())
        self.gate = copy.deepcopy(packed.gate)

    def _epilogue(self, out: torch.Tensor, x: torch.Tensor, shape) -> torch.Tensor:
        if self.scale is not None:
            out = out * self.scale.view(shape)
        if self.gate is not None:
            out = self.gate(out, None, x)
        return out if self.bias is None else out + self.bias.view(shape)


class SignedConv2d(_SignedLayer):
    def __init__(self, packed: PackedBinaryConv2d) -> None:
        super().__init__(packed, (packed.out_channels, packed.in_channels, *packed.kernel_size))
        self.stride, self.padding, self.dilation = packed.stride, packed.padding, packed.dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = _signs(x, self.threshold, (1, -1, 1, 1))
        out = F.conv2d(s, self.weight, None, self.stride, self.padding, self.dilation)
        return self._epilogue(out, x, (1, -1, 1, 1))


class SignedLinear(_SignedLayer):
    def __init__(self, packed: PackedBinaryLinear) -> None:
        super().__init__(packed, (packed.out_features, packed.in_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(_signs(x, self.threshold, (-1,)), self.weight)
        return self._epilogue(out, x, (-1,))


def onnx_form(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose binary layers compute with +-1 float weights in standard
    operators. ``model`` is a trained binary model (packed here) or a packed one (``pack_model``,
    ``load_packed``); a binary layer without a packed form is an error that gives its reason."""
    if any(isinstance(m, BinaryMixin) for m in model.modules()):
        model, report = pack_model(model, backend="torch")
        if report.kept_float:
            reasons = "; ".join(f"{n}: {why}" for n, why in report.kept_float.items())
            raise UserError(f"cannot export to ONNX: binary layers without a +-1 form ({reasons})")
    model = copy.deepcopy(model).eval()
    for name, layer in list(model.named_modules()):
        if isinstance(layer, PackedBinaryConv2d):
            new = SignedConv2d(layer)
        elif isinstance(layer, PackedBinaryLinear):
            new = SignedLinear(layer)
        else:
            continue
        parent, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, leaf, new)
    return model


def export_onnx(model: nn.Module, path: str | Path, input_shape: tuple[int, int, int]) -> Path:
    """Write ``model`` (binary, packed or not) to ``path`` as ONNX (opset 17): input ``image``
    (N, C, H, W) with ``input_shape`` = (C, H, W) and any batch size, output ``logits``."""
    import warnings

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    graph = onnx_form(model)
    example = torch.zeros(1, *input_shape)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter announces its deprecation
        torch.onnx.export(
            graph,
            (example,),
            str(path),
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    return path


__all__ = ["OPSET", "OnnxRuntimeModel", "SignedConv2d", "SignedLinear", "export_onnx", "onnx_form"]


def runtime_session(path: str | Path):
    """An onnxruntime CPU session that runs the graph as exported: its optimizer would fuse
    BatchNorm into the preceding Conv and change the float rounding before a sign, which can
    flip an activation sitting on its threshold."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxRuntimeModel(nn.Module):
    """An exported file run by onnxruntime, called like the torch model (for ``evaluate``)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        if importlib.util.find_spec("onnxruntime") is None:  # pragma: no cover - a dependency
            raise UserError("onnxruntime is not installed: pip install onnxruntime")
        self.session = runtime_session(path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (out,) = self.session.run(["logits"], {"image": x.detach().cpu().float().numpy()})
        return torch.from_numpy(out)

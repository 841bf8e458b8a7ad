"""A packed model as a TFLite file for Larq Compute Engine (LCE), the runtime that deploys binary
networks on ARM phones and boards.

Binary convolutions become LCE's operators, as its public source defines them:

* ``LceQuantize``: float32 NHWC -> int32 (N, H, W, ceil(C / 32)); bit ``c % 32`` of word ``c // 32``
  is 1 where ``x[..., c] < 0`` (LCE's bit means -1; bnn-lab's means +1, so the bits are inverted).
* ``LceBconv2d``: inputs (the packed input, the filter int32 (O, kh, kw, ceil(C / 32)) packed the
  same way, ``post_activation_multiplier`` (O,), ``post_activation_bias`` (O,), no threshold) and
  options (``channels_in``, strides, dilations, ``padding`` SAME/VALID, ``pad_values`` 0, no fused
  activation); float32 output ``conv(sign x, sign w) * multiplier + bias``. The packed layer's scale
  and bias become the multiplier and bias, and a BatchNorm that follows it is folded into them.

Zero padding: where the convolution's padding is TFLite's SAME, LCE corrects the border itself
(``pad_values=0``; not on a map smaller than the kernel, where LCE 0.16's correction is wrong: a
3x3 convolution of a 2x2 map). Elsewhere (PyTorch pads both sides alike, SAME pads the bottom/right first
when stride 2 meets an even size) the input is padded with -1 (``PADV2``), convolved VALID, and the
constant border term ``conv(mask, sign w) * multiplier`` added (``ADD``): the same exact correction
as bnn-lab's kernels (``bnn_lab.kernels.conv``).

The float layers map onto TFLite builtins (CONV_2D, FULLY_CONNECTED, MUL/ADD for an unfolded
BatchNorm, RELU, RELU_N1_TO_1, PRELU, MAX_POOL_2D, AVERAGE_POOL_2D, MEAN, RESHAPE, TRANSPOSE).
The file's input is NHWC float32 ``(1, H, W, C)``: ``x.permute(0, 2, 3, 1)``. A layer without an
LCE form (a gating scale, grouped convolutions, a module not in :data:`MODULES`) raises
:class:`LceUnsupported` naming it.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from ..errors import UserError
from ..kernels import PackedConv2dWeight, conv_pads, unpack_signs
from ..models.quicknet import BlurPool
from ..surgery.activations import RPReLU
from .fx_nodes import single_user
from .graph import _Tracer as _GraphTracer
from .graph import batchnorm_scale
from .packed_layers import PackedBinaryConv2d, PackedBinaryLinear
from .tflite_writer import TFLiteWriter

SAME, VALID = 0, 1  # tflite Padding
LOWEST = float(np.finfo(np.float32).min)


class LceUnsupported(UserError):
    """A layer of the model has no form in LCE's operators or the TFLite builtins used here."""


def lce_bits(signs: torch.Tensor) -> np.ndarray:
    """LCE's bitpacking of ``signs`` (..., C) in {-1, +1} along the last axis: int32 (..., ceil(C / 32)),
    bit ``c % 32`` of word ``c // 32`` set where the sign is -1; the bits past C are 0."""
    neg = (signs < 0).to(torch.int64).numpy()
    c = neg.shape[-1]
    words = (c + 31) // 32
    padded = np.zeros((*neg.shape[:-1], words * 32), dtype=np.int64)
    padded[..., :c] = neg
    packed = (padded.reshape(*neg.shape[:-1], words, 32) << np.arange(32, dtype=np.int64)).sum(-1)
    return packed.astype(np.uint32).view(np.int32)


def _same_pads(size: int, k: int, s: int, d: int) -> tuple[int, int]:
    out = -(-size // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


def _padding(in_hw, kernel, stride, dilation, pads) -> str:
    """'valid', 'same' (TFLite's SAME pads exactly ``pads``) or 'explicit'."""
    if not any(pads):
        return "valid"
    same = _same_pads(in_hw[0], kernel[0], stride[0], dilation[0]) + _same_pads(
        in_hw[1], kernel[1], stride[1], dilation[1]
    )
    return "same" if tuple(pads) == same else "explicit"


def _nhwc(shape) -> tuple[int, ...]:
    shape = tuple(shape)
    return (shape[0], shape[2], shape[3], shape[1]) if len(shape) == 4 else shape


def _per_channel(v: torch.Tensor, rank: int) -> np.ndarray:
    """A per-channel vector shaped to broadcast over the last axis of a rank-``rank`` NHWC tensor."""
    v = v.detach().reshape(-1).to(torch.float32).numpy()
    return v.reshape((1,) * (rank - 1) + (-1,))


def _bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(g, h) with ``bn(y) = y * g + h`` in eval mode."""
    g, beta = batchnorm_scale(bn)
    return g, beta - bn.running_mean * g


@dataclass
class _Ctx:
    w: TFLiteWriter
    modules: dict[str, nn.Module]
    values: dict[fx.Node, int] = field(default_factory=dict)
    done: set = field(default_factory=set)

    def shape(self, node: fx.Node) -> tuple[int, ...]:
        return tuple(node.meta["tensor_meta"].shape)

    def new(self, node: fx.Node, suffix: str = "", shape=None, dtype=np.float32) -> int:
        return self.w.tensor(f"{node.name}{suffix}", _nhwc(self.shape(node)) if shape is None else shape, dtype)

    def const(self, node: fx.Node, suffix: str, value: np.ndarray) -> int:
        return self.w.constant(f"{node.name}/{suffix}", value)

    def folded_bn(self, node: fx.Node) -> tuple[fx.Node | None, nn.BatchNorm2d | None]:
        """The BatchNorm that is ``node``'s only user, to fold into it (else (None, None))."""
        user = single_user(node)
        if user is not None and user.op == "call_module" and isinstance(self.modules[user.target], nn.BatchNorm2d):
            bn = self.modules[user.target]
            if bn.track_running_stats and bn.running_mean is not None:
                return user, bn
        return None, None


def _pad_input(ctx: _Ctx, node: fx.Node, x: int, in_shape, pads, value: float) -> tuple[int, tuple]:
    """``x`` (NHWC, ``in_shape`` NCHW) inside a border of ``pads`` (top, bottom, left, right) of ``value``."""
    top, bottom, left, right = pads
    n, c, h, w = in_shape
    shape = (n, h + top + bottom, w + left + right, c)
    out = ctx.w.tensor(f"{node.name}/padded", shape)
    paddings = np.array([[0, 0], [top, bottom], [left, right], [0, 0]], dtype=np.int32)
    ctx.w.builtin(
        "PADV2",
        [x, ctx.const(node, "paddings", paddings), ctx.const(node, "pad_value", np.array([value], np.float32))],
        [out],
        "PadV2Options",
    )
    return out, (n, c, shape[1], shape[2])


def _binary_inputs(ctx: _Ctx, node: fx.Node, m, x: int, shape: tuple[int, ...], pads=None) -> int:
    """``x`` (NCHW ``shape``, stored NHWC) as LCE's packed input of packed layer ``m``: ``sign(x -
    threshold)`` (RSign's thresholds as a SUB), inside a border of -1 of ``pads`` (top, bottom, left,
    right) if given, packed by LceQuantize; a gating scale is refused."""
    if m.gate is not None:
        raise LceUnsupported(f"layer {node.target}: a gating scale depends on the input; LCE has no such operator")
    if m.threshold is not None:
        shifted = ctx.w.tensor(f"{node.name}/shifted", _nhwc(shape))
        threshold = ctx.const(node, "threshold", _per_channel(m.threshold, 4))
        ctx.w.builtin("SUB", [x, threshold], [shifted], "SubOptions")
        x = shifted
    if pads is not None:
        x, shape = _pad_input(ctx, node, x, shape, pads, -1.0)
    n, c, h, w = shape
    bits = ctx.w.tensor(f"{node.name}/input_bits", (n, h, w, (c + 31) // 32), np.int32)
    ctx.w.custom("LceQuantize", [x], [bits], {})
    return bits


def _bconv(ctx: _Ctx, node: fx.Node, bits: int, signs_ohwi: torch.Tensor, mul, bias, out: int, **geometry) -> None:
    """LceBconv2d of packed ``bits`` with the weights' signs (O, kh, kw, C), float output
    ``conv * mul + bias``; ``geometry``: strides, dilations and padding (default 1, 1, VALID)."""
    options = {"stride_height": 1, "stride_width": 1, "dilation_height_factor": 1, "dilation_width_factor": 1}
    options |= {"padding": VALID, **geometry, "channels_in": signs_ohwi.shape[-1]}
    options |= {"fused_activation_function": 0, "pad_values": 0}
    ins = [bits, ctx.const(node, "filter", lce_bits(signs_ohwi))]
    ins += [ctx.const(node, "multiplier", mul.numpy()), ctx.const(node, "bias", bias.numpy()), -1]
    ctx.w.custom("LceBconv2d", ins, [out], options)


def _scale_and_bias(m, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    mul = m.scale.detach().float() if m.scale is not None else torch.ones(channels)
    return mul, m.bias.detach().float() if m.bias is not None else torch.zeros(channels)


def _binary_conv(ctx: _Ctx, node: fx.Node, m: PackedBinaryConv2d) -> None:
    src = node.args[0]
    x, in_shape = ctx.values[src], ctx.shape(src)
    pads = conv_pads(m.kernel_size, m.stride, m.padding, m.dilation)
    mode = _padding(in_shape[2:], m.kernel_size, m.stride, m.dilation, pads)
    extent = [(k - 1) * d + 1 for k, d in zip(m.kernel_size, m.dilation)]
    if mode == "same" and (in_shape[2] < extent[0] or in_shape[3] < extent[1]):
        mode = "explicit"  # LCE 0.16's SAME border correction is wrong on a map smaller than the kernel
    bits = _binary_inputs(ctx, node, m, x, in_shape, pads if mode == "explicit" else None)
    signs = unpack_signs(m.weight_bits, m.k, dtype=torch.float32).reshape(m.out_channels, m.in_channels, *m.kernel_size)
    mul, bias = _scale_and_bias(m, m.out_channels)
    bn_node, bn = ctx.folded_bn(node)
    if bn is not None:
        g, h = _bn_affine(bn)
        mul, bias = mul * g, bias * g + h
    out = ctx.new(node)
    geometry = dict(stride_height=m.stride[0], stride_width=m.stride[1], padding=SAME if mode == "same" else VALID)
    geometry |= dict(dilation_height_factor=m.dilation[0], dilation_width_factor=m.dilation[1])
    _bconv(ctx, node, bits, signs.permute(0, 2, 3, 1), mul, bias, out, **geometry)
    if mode == "explicit":  # + conv(mask, sign w) * multiplier: the zero-padding border term
        pw = PackedConv2dWeight.from_weight(signs)
        corr = pw.border_correction(tuple(ctx.shape(src)[2:]), m.stride, pads, m.dilation)
        _, o, ho, wo = ctx.shape(node)
        term = (corr.to(torch.float32) * mul).reshape(1, ho, wo, o).numpy()
        corrected = ctx.new(node, "/corrected")
        ctx.w.builtin("ADD", [out, ctx.const(node, "border", term)], [corrected], "AddOptions")
        out = corrected
    ctx.values[node] = out
    if bn_node is not None:
        ctx.values[bn_node] = out
        ctx.done.add(bn_node)


def _binary_linear(ctx: _Ctx, node: fx.Node, m: PackedBinaryLinear) -> None:
    """A binary fully connected layer as a 1x1 LceBconv2d on (N, 1, 1, in_features)."""
    src = node.args[0]
    n = ctx.shape(src)[0]
    image = (n, 1, 1, m.in_features)  # NHWC
    x = ctx.w.tensor(f"{node.name}/as_image", image)
    ctx.w.builtin("RESHAPE", [ctx.values[src], ctx.const(node, "image_shape", np.array(image, np.int32))], [x])
    bits = _binary_inputs(ctx, node, m, x, (n, m.in_features, 1, 1))
    signs = unpack_signs(m.weight_bits, m.k, dtype=torch.float32).reshape(m.out_features, 1, 1, m.in_features)
    conv = ctx.w.tensor(f"{node.name}/conv", (n, 1, 1, m.out_features))
    _bconv(ctx, node, bits, signs, *_scale_and_bias(m, m.out_features), conv)
    out = ctx.new(node)
    ctx.w.builtin("RESHAPE", [conv, ctx.const(node, "shape", np.array(ctx.shape(node), np.int32))], [out])
    ctx.values[node] = out


def _float_conv(ctx: _Ctx, node: fx.Node, m: nn.Conv2d) -> None:
    """CONV_2D, or DEPTHWISE_CONV_2D where every input channel is its own group (QuickNet's stem)."""
    depthwise = m.groups == m.in_channels and m.groups > 1
    if m.groups != 1 and not depthwise:
        raise LceUnsupported(f"layer {node.target}: grouped float convolutions (groups={m.groups}) are not exported")
    if m.padding_mode != "zeros":
        raise LceUnsupported(f"layer {node.target}: padding_mode={m.padding_mode!r} is not exported")
    src = node.args[0]
    x, in_shape = ctx.values[src], ctx.shape(src)
    pads = conv_pads(m.kernel_size, m.stride, m.padding, m.dilation)
    mode = _padding(in_shape[2:], m.kernel_size, m.stride, m.dilation, pads)
    if mode == "explicit":
        x, in_shape = _pad_input(ctx, node, x, in_shape, pads, 0.0)
    weight = m.weight.detach().float()
    bias = m.bias.detach().float() if m.bias is not None else torch.zeros(m.out_channels)
    bn_node, bn = ctx.folded_bn(node)
    if bn is not None:
        g, h = _bn_affine(bn)
        weight, bias = weight * g.view(-1, 1, 1, 1), bias * g + h
    out = ctx.new(node)
    geometry = dict(
        Padding=SAME if mode == "same" else VALID,
        StrideW=m.stride[1],
        StrideH=m.stride[0],
        DilationWFactor=m.dilation[1],
        DilationHFactor=m.dilation[0],
    )
    if depthwise:  # filter (1, kh, kw, C * multiplier)
        filt = weight.permute(1, 2, 3, 0).contiguous().numpy()
        multiplier = m.out_channels // m.in_channels
        ins = [x, ctx.const(node, "filter", filt), ctx.const(node, "bias", bias.numpy())]
        ctx.w.builtin("DEPTHWISE_CONV_2D", ins, [out], "DepthwiseConv2DOptions", DepthMultiplier=multiplier, **geometry)
    else:
        filt = weight.permute(0, 2, 3, 1).contiguous().numpy()
        ins = [x, ctx.const(node, "filter", filt), ctx.const(node, "bias", bias.numpy())]
        ctx.w.builtin("CONV_2D", ins, [out], "Conv2DOptions", **geometry)
    ctx.values[node] = out
    if bn_node is not None:
        ctx.values[bn_node] = out
        ctx.done.add(bn_node)


def _blur_pool(ctx: _Ctx, node: fx.Node, m: BlurPool) -> None:
    """QuickNet's fixed per-channel blur, stride 2, padding 1: a DEPTHWISE_CONV_2D."""
    src = node.args[0]
    x, in_shape = ctx.values[src], ctx.shape(src)
    kernel = m.kernel.detach().float()  # (C, 1, 3, 3)
    stride = (m.stride, m.stride)
    pads = (1, 1, 1, 1)
    mode = _padding(in_shape[2:], (3, 3), stride, (1, 1), pads)
    if mode == "explicit":
        x, in_shape = _pad_input(ctx, node, x, in_shape, pads, 0.0)
    out = ctx.new(node)
    filt = ctx.const(node, "filter", kernel.permute(1, 2, 3, 0).contiguous().numpy())
    bias = ctx.const(node, "bias", np.zeros(kernel.shape[0], np.float32))
    ctx.w.builtin(
        "DEPTHWISE_CONV_2D",
        [x, filt, bias],
        [out],
        "DepthwiseConv2DOptions",
        Padding=SAME if mode == "same" else VALID,
        StrideW=stride[1],
        StrideH=stride[0],
        DepthMultiplier=1,
    )
    ctx.values[node] = out


def _pad(ctx: _Ctx, node: fx.Node) -> None:
    """``F.pad(x, (left, right, top, bottom), value=v)`` of an NCHW tensor (constant mode): PADV2."""
    args = dict(zip(("input", "pad", "mode", "value"), node.args)) | dict(node.kwargs)
    pad, mode, value = tuple(args["pad"]), args.get("mode", "constant"), args.get("value", 0.0)
    if mode != "constant" or len(pad) not in (2, 4) or len(ctx.shape(node)) != 4:
        raise LceUnsupported(f"operation pad (in {node.name}): only constant padding of H and W is exported")
    left, right = pad[:2]
    top, bottom = pad[2:] if len(pad) == 4 else (0, 0)
    value = LOWEST if value is not None and value == float("-inf") else float(value or 0.0)
    src = node.args[0]
    out, _ = _pad_input(ctx, node, ctx.values[src], ctx.shape(src), (top, bottom, left, right), value)
    ctx.values[node] = out


def _linear(ctx: _Ctx, node: fx.Node, m: nn.Linear) -> None:
    bias = m.bias.detach().float() if m.bias is not None else torch.zeros(m.out_features)
    out = ctx.new(node)
    ctx.w.builtin(
        "FULLY_CONNECTED",
        [
            ctx.values[node.args[0]],
            ctx.const(node, "weight", m.weight.detach().float().numpy()),
            ctx.const(node, "bias", bias.numpy()),
        ],
        [out],
        "FullyConnectedOptions",
    )
    ctx.values[node] = out


def _batchnorm(ctx: _Ctx, node: fx.Node, m: nn.BatchNorm2d) -> None:
    g, h = _bn_affine(m)
    rank = len(ctx.shape(node))
    scaled = ctx.new(node, "/scaled")
    ctx.w.builtin(
        "MUL", [ctx.values[node.args[0]], ctx.const(node, "scale", _per_channel(g, rank))], [scaled], "MulOptions"
    )
    out = ctx.new(node)
    ctx.w.builtin("ADD", [scaled, ctx.const(node, "shift", _per_channel(h, rank))], [out], "AddOptions")
    ctx.values[node] = out


def _unary(op: str) -> Callable:
    def emit(ctx: _Ctx, node: fx.Node, m: nn.Module) -> None:
        out = ctx.new(node)
        ctx.w.builtin(op, [ctx.values[node.args[0]]], [out])
        ctx.values[node] = out

    return emit


def _hardtanh(ctx: _Ctx, node: fx.Node, m: nn.Hardtanh) -> None:
    if (m.min_val, m.max_val) == (-1.0, 1.0):
        return _unary("RELU_N1_TO_1")(ctx, node, m)
    low = ctx.new(node, "/low")
    ctx.w.builtin(
        "MAXIMUM", [ctx.values[node.args[0]], ctx.const(node, "min", np.array([m.min_val], np.float32))], [low]
    )
    out = ctx.new(node)
    ctx.w.builtin("MINIMUM", [low, ctx.const(node, "max", np.array([m.max_val], np.float32))], [out])
    ctx.values[node] = out


def _prelu_into(ctx: _Ctx, node: fx.Node, x: int, prelu: nn.PReLU, suffix: str = "") -> int:
    rank = len(ctx.shape(node))
    out = ctx.new(node, suffix)
    ctx.w.builtin("PRELU", [x, ctx.const(node, f"alpha{suffix}", _per_channel(prelu.weight, rank))], [out])
    return out


def _prelu(ctx: _Ctx, node: fx.Node, m: nn.PReLU) -> None:
    ctx.values[node] = _prelu_into(ctx, node, ctx.values[node.args[0]], m)


def _rprelu(ctx: _Ctx, node: fx.Node, m: RPReLU) -> None:
    rank = len(ctx.shape(node))
    shifted = ctx.new(node, "/shifted")
    ctx.w.builtin(
        "SUB",
        [ctx.values[node.args[0]], ctx.const(node, "shift_in", _per_channel(m.shift_in, rank))],
        [shifted],
        "SubOptions",
    )
    act = _prelu_into(ctx, node, shifted, m.prelu, "/prelu")
    out = ctx.new(node)
    ctx.w.builtin("ADD", [act, ctx.const(node, "shift_out", _per_channel(m.shift_out, rank))], [out], "AddOptions")
    ctx.values[node] = out


def _alias(ctx: _Ctx, node: fx.Node, m: nn.Module | None = None) -> None:
    ctx.values[node] = ctx.values[node.args[0]]


def _pool(op: str, pad_value: float | None) -> Callable:
    def emit(ctx: _Ctx, node: fx.Node, m: nn.Module) -> None:
        k = m.kernel_size if isinstance(m.kernel_size, tuple) else (m.kernel_size, m.kernel_size)
        stride = m.stride if m.stride is not None else k
        stride = stride if isinstance(stride, tuple) else (stride, stride)
        padding = m.padding if isinstance(m.padding, tuple) else (m.padding, m.padding)
        src = node.args[0]
        x, in_shape = ctx.values[src], ctx.shape(src)
        floor = [(in_shape[2 + i] + 2 * padding[i] - k[i]) // stride[i] + 1 for i in (0, 1)]
        if list(ctx.shape(node)[2:]) != floor or getattr(m, "dilation", 1) not in (1, (1, 1)):
            raise LceUnsupported(f"layer {node.target}: pooling with ceil_mode (that rounds up here) or dilation")
        pads = (padding[0], padding[0], padding[1], padding[1])
        mode = _padding(in_shape[2:], k, stride, (1, 1), pads)
        if mode != "valid" and pad_value is None:
            raise LceUnsupported(f"layer {node.target}: padded average pooling is not exported")
        if mode == "explicit":
            x, in_shape = _pad_input(ctx, node, x, in_shape, pads, pad_value)
        out = ctx.new(node)
        ctx.w.builtin(
            op,
            [x],
            [out],
            "Pool2DOptions",
            Padding=SAME if mode == "same" else VALID,
            StrideW=stride[1],
            StrideH=stride[0],
            FilterWidth=k[1],
            FilterHeight=k[0],
        )
        ctx.values[node] = out

    return emit


def _global_avg(ctx: _Ctx, node: fx.Node, m: nn.AdaptiveAvgPool2d) -> None:
    in_hw, out_hw = ctx.shape(node.args[0])[2:], ctx.shape(node)[2:]
    if tuple(out_hw) != (1, 1):
        if any(i % o for i, o in zip(in_hw, out_hw)):
            raise LceUnsupported(f"layer {node.target}: adaptive pooling from {tuple(in_hw)} to {tuple(out_hw)}")
        out = ctx.new(node)  # equal windows: a plain average pooling
        k = [i // o for i, o in zip(in_hw, out_hw)]
        ctx.w.builtin(
            "AVERAGE_POOL_2D",
            [ctx.values[node.args[0]]],
            [out],
            "Pool2DOptions",
            Padding=VALID,
            StrideW=k[1],
            StrideH=k[0],
            FilterWidth=k[1],
            FilterHeight=k[0],
        )
        ctx.values[node] = out
        return
    out = ctx.new(node)
    axes = ctx.const(node, "axes", np.array([1, 2], np.int32))
    ctx.w.builtin("MEAN", [ctx.values[node.args[0]], axes], [out], "ReducerOptions", KeepDims=True)
    ctx.values[node] = out


def _flatten(ctx: _Ctx, node: fx.Node, m: nn.Module | None = None) -> None:
    src = node.args[0]
    x, shape = ctx.values[src], ctx.shape(src)
    if len(shape) == 4 and shape[2] * shape[3] > 1:  # NHWC -> NCHW before flattening, as torch flattens
        t = ctx.w.tensor(f"{node.name}/nchw", shape)
        ctx.w.builtin(
            "TRANSPOSE", [x, ctx.const(node, "perm", np.array([0, 3, 1, 2], np.int32))], [t], "TransposeOptions"
        )
        x = t
    out = ctx.new(node)
    ctx.w.builtin("RESHAPE", [x, ctx.const(node, "shape", np.array(ctx.shape(node), np.int32))], [out])
    ctx.values[node] = out


def _add(ctx: _Ctx, node: fx.Node, m: None = None) -> None:
    a, b = node.args[:2]
    ins = [
        ctx.values[v] if isinstance(v, fx.Node) else ctx.const(node, "addend", np.array([v], np.float32))
        for v in (a, b)
    ]
    out = ctx.new(node)
    ctx.w.builtin("ADD", ins, [out], "AddOptions")
    ctx.values[node] = out


#: module type -> emitter(ctx, node, module): the layers that map onto LCE / TFLite operators
MODULES: dict[type, Callable] = {
    PackedBinaryConv2d: _binary_conv,
    PackedBinaryLinear: _binary_linear,
    nn.Conv2d: _float_conv,
    nn.Linear: _linear,
    nn.BatchNorm2d: _batchnorm,
    nn.BatchNorm1d: _batchnorm,
    nn.ReLU: _unary("RELU"),
    nn.ReLU6: _unary("RELU6"),
    nn.Hardtanh: _hardtanh,
    nn.PReLU: _prelu,
    RPReLU: _rprelu,
    nn.Identity: _alias,
    nn.Dropout: _alias,
    nn.Flatten: _flatten,
    nn.MaxPool2d: _pool("MAX_POOL_2D", LOWEST),
    nn.AvgPool2d: _pool("AVERAGE_POOL_2D", None),
    nn.AdaptiveAvgPool2d: _global_avg,
    BlurPool: _blur_pool,
}
#: function or method called in the forward -> emitter(ctx, node)
FUNCTIONS: dict[object, Callable] = {
    operator.add: _add,
    torch.add: _add,
    operator.iadd: _add,
    torch.flatten: _flatten,
    "flatten": _flatten,
    F.pad: _pad,
}


class _Tracer(_GraphTracer):
    """The inference graph's tracer (packed layers and RPReLU as leaves), QuickNet's blur pool a leaf too."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, BlurPool) or super().is_leaf_module(m, qualname)


def to_lce(packed: nn.Module, input_shape: tuple[int, int, int]) -> bytes:
    """The TFLite file (bytes) of a packed model (``pack_model``) for inputs of ``input_shape`` (C, H, W),
    batch 1; raises :class:`LceUnsupported` naming the first layer without an LCE form."""
    packed = packed.eval()
    try:
        gm = fx.GraphModule(packed, _Tracer().trace(packed))
    except Exception as exc:  # noqa: BLE001 - dynamic control flow
        raise LceUnsupported(f"the model cannot be traced by torch.fx ({type(exc).__name__}: {exc})") from exc
    with torch.no_grad():
        ShapeProp(gm).propagate(torch.zeros(1, *input_shape))
    ctx = _Ctx(TFLiteWriter("bnn-lab packed model for Larq Compute Engine"), dict(gm.named_modules()))
    inputs, outputs = [], []
    for node in gm.graph.nodes:
        if node in ctx.done:
            continue
        if node.op == "placeholder":
            ctx.values[node] = ctx.new(node)
            inputs.append(ctx.values[node])
        elif node.op == "output":
            outputs = [ctx.values[a] for a in (node.args[0] if isinstance(node.args[0], tuple) else (node.args[0],))]
        elif node.op == "call_module":
            m = ctx.modules[node.target]
            emit = MODULES.get(type(m))
            if emit is None:
                raise LceUnsupported(
                    f"layer {node.target} ({type(m).__name__}) has no LCE/TFLite form here; exported: "
                    + ", ".join(sorted(t.__name__ for t in MODULES))
                )
            emit(ctx, node, m)
        elif node.op in ("call_function", "call_method"):
            emit = FUNCTIONS.get(node.target)
            if emit is None:
                name = getattr(node.target, "__name__", str(node.target))
                raise LceUnsupported(f"operation {name} (in {node.name}) has no LCE/TFLite form here")
            emit(ctx, node)
        else:
            raise LceUnsupported(f"node {node.name} ({node.op}) has no LCE/TFLite form here")
    return ctx.w.finish(inputs, outputs)


def export_lce(packed: nn.Module, path: str | Path, input_shape: tuple[int, int, int]) -> Path:
    """Write :func:`to_lce` of ``packed`` to ``path`` (whole or not at all); returns the path."""
    from ..files import atomic_write

    path = Path(path)
    data = to_lce(packed, input_shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


__all__ = ["FUNCTIONS", "MODULES", "LceUnsupported", "export_lce", "lce_bits", "to_lce"]

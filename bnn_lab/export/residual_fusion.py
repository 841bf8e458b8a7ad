"""A packed convolution, the residual addition after it and the clamping activation after that, in
one kernel call.

Residual binary networks (Bi-Real, ResNet, ReActNet) spend much of their float time on the stream
between binary layers: ``y = act(bn(conv(x)) + shortcut)``. With the BatchNorm folded into the
convolution's scale and bias (``bnn_lab.export.graph``), ``clamp(acc * s + b + shortcut, lo, hi)``
is the packed convolution's epilogue (``kernels.AffineEpilogue``): the ``cpu`` backend computes it
inside its GEMM, in the same float operations and order as the modules it replaces.

Where the result is also the input of one binary convolution (the next block's first conv), the
same epilogue packs its signs for that convolution: ``sign(y - t) = +1`` exactly when ``y >= t``,
so the next layer reads bits and the float stream is not read again to pack it.
"""

from __future__ import annotations

import math
import operator

import torch
import torch.fx as fx
from torch import nn

from .. import kernels
from ..kernels.conv import _conv_geometry, next_layer_input
from .float_rewrites import ADDS, add_into
from .fx_nodes import module_calls, single_user
from .packed_layers import PackedBinaryConv2d
from .to_bits import PackedConv2dToBits

# clamping activations: (lo, hi) of the module
CLAMPS = {nn.Hardtanh: lambda m: (float(m.min_val), float(m.max_val)), nn.ReLU: lambda m: (0.0, math.inf)}
_ADDS = (*ADDS, add_into)


class PackedConv2dResidual(nn.Module):
    """``clamp(conv(x) + residual, lo, hi)`` (``clamp`` None: no activation) as one packed convolution;
    with ``bits_threshold`` set (the next binary layer's input threshold, or 0.0) it returns the pair
    (that float output, the packed signs of ``output - bits_threshold``, inside the zero border
    ``bits_padding``: the next layer's padded input)."""

    def __init__(self, conv: PackedBinaryConv2d, clamp: tuple[float, float] | None) -> None:
        super().__init__()
        self.conv = conv
        self.clamp = clamp
        self.bits_threshold: torch.Tensor | float | None = None
        self.bits_padding: tuple[int, int, int, int] | None = None
        self._epilogue: kernels.AffineEpilogue | None = None  # made on the first call (constants converted once)
        self._out_shapes: dict[tuple, tuple] = {}  # input shape -> output shape

    def _out_shape(self, x) -> tuple[int, ...]:
        key = tuple(x.shape)
        shape = self._out_shapes.get(key)
        if shape is None:
            c = self.conv
            n, _, h, w = key
            _, (h_out, w_out) = _conv_geometry((h, w), c.kernel_size, c.stride, c.padding, c.dilation)
            shape = self._out_shapes[key] = (n, c.out_channels, h_out, w_out)
        return shape

    def forward(self, x, residual):
        c = self.conv
        packed_in = isinstance(x, kernels.PackedConv2dInput)
        if (
            isinstance(residual, torch.Tensor)
            and residual.dtype == torch.float32
            and c.gate is None
            and (packed_in or x.dtype == torch.float32)
            and tuple(residual.shape) == self._out_shape(x)
        ):
            u = x if packed_in or c.threshold is None else x - c.threshold.view(1, -1, 1, 1)
            ep = self._epilogue
            if (
                ep is None
                or ep.scale is not c.scale
                or ep.bias is not c.bias
                or ep.bits_threshold is not self.bits_threshold
                or ep.fused != c.fused_epilogue
            ):
                self._epilogue = kernels.AffineEpilogue(
                    c.scale, c.bias, None, self.clamp, self.bits_threshold, c.fused_epilogue
                )
            epilogue = self._epilogue.with_residual(residual)
            conv = (c.packed_weight(), epilogue, c.stride, c.padding, c.dilation)
            if self.bits_threshold is None:
                return kernels.binary_conv2d_affine(u, *conv, backend=c.backend)
            return kernels.binary_conv2d_affine_bits(u, *conv, backend=c.backend, out_padding=self.bits_padding)
        out = c(x) + residual
        out = out if self.clamp is None else out.clamp(*self.clamp)
        if self.bits_threshold is None:
            return out
        t = self.bits_threshold
        return out, next_layer_input(out - (t.view(1, -1, 1, 1) if isinstance(t, torch.Tensor) else t))

    def extra_repr(self) -> str:
        bits = "" if self.bits_threshold is None else ", also packed bits for the next binary layer"
        return f"+ residual, clamp={self.clamp}{bits}"


def clamp_after(node: fx.Node, modules: dict, calls) -> tuple[tuple[float, float] | None, fx.Node]:
    """The clamping activation (a module in :data:`CLAMPS`, called once) that alone reads ``node``:
    its ``(lo, hi)`` and its node; ``(None, node)`` when there is none."""
    act = single_user(node)
    if (
        act is not None
        and act.op == "call_module"
        and type(modules[act.target]) in CLAMPS
        and calls[act.target] == 1
        and act.args == (node,)
        and not act.kwargs
    ):
        return CLAMPS[type(modules[act.target])](modules[act.target]), act
    return None, node


def fuse_residuals(gm: fx.GraphModule) -> int:
    """Rewrite every ``act(conv(x) + r)`` (packed ``conv`` without a gating scale, its output read only
    by the addition, ``act`` a Hardtanh or ReLU called once, or absent) into one
    :class:`PackedConv2dResidual`; returns the count."""
    modules, calls, count = dict(gm.named_modules()), module_calls(gm), 0
    for node in list(gm.graph.nodes):
        if (
            node.op != "call_module"
            or not isinstance(modules[node.target], PackedBinaryConv2d)
            or modules[node.target].gate is not None
            or calls[node.target] != 1
        ):
            continue
        add = single_user(node)
        if add is None or add.op != "call_function" or add.target not in _ADDS or len(add.args) != 2 or add.kwargs:
            continue
        other = add.args[1] if add.args[0] is node else add.args[0]
        if other is node or not isinstance(other, fx.Node):
            continue
        clamp, last = clamp_after(add, modules, calls)
        name = node.target.replace(".", "_") + "_residual"
        gm.add_submodule(name, PackedConv2dResidual(modules[node.target], clamp))
        with gm.graph.inserting_after(last):
            fused = gm.graph.call_module(name, (node.args[0], other))
        last.replace_all_uses_with(fused)
        for dead in ([last] if last is not add else []) + [add, node]:
            gm.graph.erase_node(dead)
        count += 1
    return count


def _packed_conv(module: nn.Module) -> PackedBinaryConv2d | None:
    """The packed convolution of a module (fused or not); None when it has none."""
    conv = module.conv if isinstance(module, (PackedConv2dToBits, PackedConv2dResidual)) else module
    return conv if isinstance(conv, PackedBinaryConv2d) else None


def _input_threshold(module: nn.Module):
    """The input threshold of a packed convolution module (fused or not), 0.0 without one; None when
    the module is not a packed convolution or cannot take packed bits (a gating scale reads its real
    input)."""
    conv = _packed_conv(module)
    if conv is None or conv.gate is not None:
        return None
    return 0.0 if conv.threshold is None else conv.threshold


def hand_bits_to_next(gm: fx.GraphModule, producers: tuple[type, ...] = (PackedConv2dResidual,)) -> int:
    """Where the output of a module that can also pack it (``producers``: modules with ``bits_threshold``
    and ``bits_padding``, a fused residual convolution by default) is the input of exactly one packed
    convolution, let it also emit that convolution's packed input bits (padded as that convolution
    reads them); returns the count."""
    modules, count = dict(gm.named_modules()), 0
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(modules[node.target], producers):
            continue
        readers = [
            u
            for u in node.users
            if u.op == "call_module"
            and u.args
            and u.args[0] is node
            and _input_threshold(modules[u.target]) is not None
        ]
        if len(readers) != 1:
            continue
        reader = modules[readers[0].target]
        modules[node.target].bits_threshold = _input_threshold(reader)
        modules[node.target].bits_padding = _packed_conv(reader).input_pads()
        with gm.graph.inserting_after(node):
            bits = gm.graph.call_function(operator.getitem, (node, 1))
        with gm.graph.inserting_after(node):
            value = gm.graph.call_function(operator.getitem, (node, 0))
        node.replace_all_uses_with(value, delete_user_cb=lambda user, kept=(value, bits): user not in kept)
        readers[0].args = (bits,) + tuple(readers[0].args[1:])
        count += 1
    return count


__all__ = ["CLAMPS", "PackedConv2dResidual", "clamp_after", "fuse_residuals", "hand_bits_to_next"]

"""A packed convolution, the residual addition after it and the clamping activation after that, in
one kernel call.

Residual binary networks (Bi-Real, ResNet, ReActNet) spend much of their float time on the stream
between binary layers: ``y = act(bn(conv(x)) + shortcut)``. With the BatchNorm folded into the
convolution's scale and bias (``bnn_lab.export.graph``), ``clamp(acc * s + b + shortcut, lo, hi)``
is the packed convolution's epilogue (``kernels.AffineEpilogue``): the ``cpu`` backend computes it
inside its GEMM, in the same float operations and order as the modules it replaces.
"""
from __future__ import annotations

import math
import operator

import torch
import torch.fx as fx
from torch import nn

from .. import kernels
from ..kernels.conv import _conv_geometry
from .float_rewrites import add_into
from .packed_layers import PackedBinaryConv2d

# clamping activations: (lo, hi) of the module
CLAMPS = {nn.Hardtanh: lambda m: (float(m.min_val), float(m.max_val)), nn.ReLU: lambda m: (0.0, math.inf)}
_ADDS = (operator.add, torch.add, add_into)


class PackedConv2dResidual(nn.Module):
    """``clamp(conv(x) + residual, lo, hi)`` (``clamp`` None: no activation) as one packed convolution."""

    def __init__(self, conv: PackedBinaryConv2d, clamp: tuple[float, float] | None) -> None:
        super().__init__()
        self.conv = conv
        self.clamp = clamp

    def _out_shape(self, x) -> tuple[int, ...]:
        c = self.conv
        n, _, h, w = x.shape
        _, (h_out, w_out) = _conv_geometry((h, w), c.kernel_size, c.stride, c.padding, c.dilation)
        return (n, c.out_channels, h_out, w_out)

    def forward(self, x, residual):
        c = self.conv
        packed_in = isinstance(x, kernels.PackedConv2dInput)
        if (isinstance(residual, torch.Tensor) and residual.dtype == torch.float32 and c.gate is None
                and (packed_in or x.dtype == torch.float32) and tuple(residual.shape) == self._out_shape(x)):
            u = x if packed_in or c.threshold is None else x - c.threshold.view(1, -1, 1, 1)
            epilogue = kernels.AffineEpilogue(c.scale, c.bias, residual, self.clamp)
            return kernels.binary_conv2d(u, c.packed_weight(), c.stride, c.padding, c.dilation, backend=c.backend,
                                         epilogue=epilogue)
        out = c(x) + residual
        return out if self.clamp is None else out.clamp(*self.clamp)

    def extra_repr(self) -> str:
        return f"+ residual, clamp={self.clamp}"


def _single_user(node: fx.Node) -> fx.Node | None:
    return next(iter(node.users)) if len(node.users) == 1 else None


def fuse_residuals(gm: fx.GraphModule) -> int:
    """Rewrite every ``act(conv(x) + r)`` (packed ``conv`` without a gating scale, its output read only
    by the addition, ``act`` a Hardtanh or ReLU called once, or absent) into one
    :class:`PackedConv2dResidual`; returns the count."""
    modules, count = dict(gm.named_modules()), 0
    calls: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(modules[node.target], PackedBinaryConv2d) \
                or modules[node.target].gate is not None or calls[node.target] != 1:
            continue
        add = _single_user(node)
        if add is None or add.op != "call_function" or add.target not in _ADDS or len(add.args) != 2 or add.kwargs:
            continue
        other = add.args[1] if add.args[0] is node else add.args[0]
        if other is node or not isinstance(other, fx.Node):
            continue
        act, clamp, last = _single_user(add), None, add
        if act is not None and act.op == "call_module" and type(modules[act.target]) in CLAMPS \
                and calls[act.target] == 1 and act.args == (add,):
            clamp, last = CLAMPS[type(modules[act.target])](modules[act.target]), act
        name = node.target.replace(".", "_") + "_residual"
        gm.add_submodule(name, PackedConv2dResidual(modules[node.target], clamp))
        with gm.graph.inserting_after(last):
            fused = gm.graph.call_module(name, (node.args[0], other))
        last.replace_all_uses_with(fused)
        for dead in ([act] if last is act else []) + [add, node]:
            gm.graph.erase_node(dead)
        count += 1
    return count


__all__ = ["CLAMPS", "PackedConv2dResidual", "fuse_residuals"]

"""A max-pooling, the clamping activation after it and the next binary layer's packed input, in one
kernel call.

The stem of a binary ResNet (float convolution -> max-pooling -> Hardtanh or ReLU, the pooling
moved first by ``float_rewrites``) produces the float stream the first block adds back and, from the
same values, the signs its first binary convolution reads. ``kernels.max_pool2d_clamp`` computes
the pooling, the clamp and those packed signs in one pass (written inside that convolution's zero
border), so the pooled activation is written once and not read again to be clamped and packed.
"""

from __future__ import annotations

import torch.fx as fx
from torch import nn

from .. import kernels
from .fx_nodes import module_calls
from .residual_fusion import clamp_after


class PooledClamp(nn.Module):
    """``clamp(max_pool2d(x), lo, hi)`` (``clamp`` None: no activation) as one call; with
    ``bits_threshold`` set (the next binary layer's input threshold, or 0.0) it returns the pair (that
    output, the packed signs of ``output - bits_threshold`` inside the zero border ``bits_padding``),
    as :class:`~bnn_lab.export.residual_fusion.PackedConv2dResidual` does."""

    def __init__(self, pool: nn.MaxPool2d, clamp: tuple[float, float] | None) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = pool.kernel_size, pool.stride, pool.padding
        self.clamp = clamp
        self.bits_threshold = None
        self.bits_padding: tuple[int, int, int, int] | None = None

    def forward(self, x):
        return kernels.max_pool2d_clamp(
            x,
            self.kernel_size,
            self.stride,
            self.padding,
            self.clamp,
            bits_threshold=self.bits_threshold,
            out_padding=self.bits_padding,
        )

    def extra_repr(self) -> str:
        bits = "" if self.bits_threshold is None else ", also packed bits for the next binary layer"
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, clamp={self.clamp}{bits}"


def _fusable(pool: nn.Module) -> bool:
    return (
        type(pool) is nn.MaxPool2d and pool.dilation in (1, (1, 1)) and not pool.ceil_mode and not pool.return_indices
    )


def fuse_pooling(gm: fx.GraphModule) -> int:
    """Rewrite every ``act(maxpool(x))`` (``act`` a Hardtanh or ReLU called once and reading only the
    pooling, or absent; the pooling with dilation 1 and floor mode) into one :class:`PooledClamp`;
    returns the count."""
    modules, calls, count = dict(gm.named_modules()), module_calls(gm), 0
    for node in list(gm.graph.nodes):
        if (
            node.op != "call_module"
            or not _fusable(modules[node.target])
            or calls[node.target] != 1
            or len(node.args) != 1
            or node.kwargs
        ):
            continue
        clamp, last = clamp_after(node, modules, calls)
        name = node.target.replace(".", "_") + "_clamp"
        gm.add_submodule(name, PooledClamp(modules[node.target], clamp))
        with gm.graph.inserting_after(last):
            fused = gm.graph.call_module(name, node.args)
        last.replace_all_uses_with(fused)
        for dead in ([last] if last is not node else []) + [node]:
            gm.graph.erase_node(dead)
        count += 1
    return count


__all__ = ["PooledClamp", "fuse_pooling"]

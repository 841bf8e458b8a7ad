"""Large float convolutions of a batch, image by image on the kernel threads.

With the kernels on TBB the inference graph runs torch on the calling thread
(``kernels.thread_pools.float_ops_on_caller``), so a float stem of a batch of 16 would take one
core while the other waits. :class:`ImageSplitConv2d` deals the batch's images to the calling
thread and the kernels' other threads (``thread_pools.deal``: whoever is free takes the next
image, a thread without a core takes none), each image a one-thread torch convolution written into
its slice of the output. Where there is nothing to share (one image, one thread, the ``omp``
layer, autograd or autocast on) it is the plain convolution.
"""

from __future__ import annotations

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from .. import kernels
from ..kernels import thread_pools
from ..kernels.registry import resolve_backend
from .fx_nodes import module_calls, single_user
from .pool_fusion import PooledClamp

#: Per-image multiply-adds below which a convolution stays whole: handing an image to another
#: thread costs tens of microseconds, a 1x1 downsampling convolution of ResNet-18 is ~6 M.
MIN_MACS_PER_IMAGE = 20_000_000


def _out_size(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


class ImageSplitConv2d(nn.Conv2d):
    """``nn.Conv2d`` (zero padding, numeric padding) whose batch runs image by image on the kernel
    threads when they are shared and the image is worth it (:data:`MIN_MACS_PER_IMAGE`)."""

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> ImageSplitConv2d:
        """The same module (its parameters, buffers and settings shared), as this class."""
        new = cls.__new__(cls)
        new.__dict__.update(conv.__dict__)
        return new

    def _split_shape(self, x: torch.Tensor) -> tuple[int, int, int, int] | None:
        """The output's shape where the batch is dealt, else None."""
        if (
            x.dim() != 4
            or x.shape[0] < 2
            or x.device.type != "cpu"
            or torch.is_grad_enabled()
            or torch.is_autocast_enabled("cpu")  # per thread, like grad mode: not handed to helpers
            or (thread_pools.kernel_threads() or 1) < 2
        ):
            return None
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = self.kernel_size, self.stride, self.padding, self.dilation
        ho = _out_size(x.shape[2], kh, sh, ph, dh)
        wo = _out_size(x.shape[3], kw, sw, pw, dw)
        macs = self.out_channels * (self.in_channels // self.groups) * kh * kw * ho * wo
        if macs < MIN_MACS_PER_IMAGE or ho <= 0 or wo <= 0:
            return None
        return x.shape[0], self.out_channels, ho, wo

    def image(self, x: torch.Tensor, i: int) -> torch.Tensor:
        """The convolution of image ``i`` of the batch ``x`` alone, (1, C, H, W)."""
        return F.conv2d(x[i : i + 1], self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = self._split_shape(x)
        if shape is None:
            return super().forward(x)
        fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
        out = torch.empty(shape, dtype=x.dtype, memory_format=fmt)

        def one(i: int) -> None:  # F.conv2d and copy_ let go of the GIL while they run
            out[i : i + 1].copy_(self.image(x, i))

        thread_pools.deal(one, shape[0])
        return out


def split_float_convs(gm: fx.GraphModule) -> int:
    """Make every float ``nn.Conv2d`` of the graph (zero padding given as numbers) an
    :class:`ImageSplitConv2d`; returns the count."""
    modules, count = dict(gm.named_modules()), 0
    for node in gm.graph.nodes:
        if node.op != "call_module":
            continue
        conv = modules[node.target]
        if type(conv) is not nn.Conv2d or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            continue
        gm.add_submodule(node.target, ImageSplitConv2d.from_conv(conv))
        modules[node.target] = gm.get_submodule(node.target)
        count += 1
    return count


class ImageSplitConvPool(nn.Module):
    """An :class:`ImageSplitConv2d` and the :class:`~bnn_lab.export.pool_fusion.PooledClamp` that alone
    reads it (a binary ResNet's stem): where the batch is dealt, each image is pooled (and its signs
    packed) by the thread that made it, while the image is still in that core's cache, and the
    convolution's output is never assembled (``kernels.max_pool2d_clamp_by_image``)."""

    def __init__(self, conv: ImageSplitConv2d, pool: PooledClamp) -> None:
        super().__init__()
        self.conv, self.pool = conv, pool

    def forward(self, x: torch.Tensor):
        conv, pool = self.conv, self.pool
        shape = conv._split_shape(x)
        if (
            shape is None
            or x.dtype != torch.float32
            or not x.permute(0, 2, 3, 1).is_contiguous()
            or resolve_backend("auto", x.device) != "cpu"
        ):
            return pool(conv(x))
        n, channels, ho, wo = shape
        return kernels.max_pool2d_clamp_by_image(
            lambda i: conv.image(x, i),
            n,
            (channels, ho, wo),
            pool.kernel_size,
            pool.stride,
            pool.padding,
            pool.clamp,
            bits_threshold=pool.bits_threshold,
            out_padding=pool.bits_padding,
            run=thread_pools.deal,
        )


def pool_split_convs(gm: fx.GraphModule) -> int:
    """Join every :class:`ImageSplitConv2d` whose output only a :class:`PooledClamp` reads, both called
    once, into an :class:`ImageSplitConvPool`; returns the count."""
    modules, calls, count = dict(gm.named_modules()), module_calls(gm), 0
    for node in list(gm.graph.nodes):
        user = single_user(node)
        if (
            node.op != "call_module"
            or not isinstance(modules[node.target], ImageSplitConv2d)
            or user is None
            or user.op != "call_module"
            or not isinstance(modules[user.target], PooledClamp)
            or user.args != (node,)
            or user.kwargs
            or calls[node.target] != 1
            or calls[user.target] != 1
        ):
            continue
        name = node.target.replace(".", "_") + "_pooled"
        gm.add_submodule(name, ImageSplitConvPool(modules[node.target], modules[user.target]))
        with gm.graph.inserting_after(user):
            fused = gm.graph.call_module(name, node.args, node.kwargs)
        user.replace_all_uses_with(fused)
        gm.graph.erase_node(user)
        gm.graph.erase_node(node)
        count += 1
    return count


__all__ = ["MIN_MACS_PER_IMAGE", "ImageSplitConv2d", "ImageSplitConvPool", "pool_split_convs", "split_float_convs"]

"""Max-pooling, a clamping activation and the next binary convolution's packed input in one pass.

In a binary network's stem (float convolution -> max-pooling -> clamping activation) the pooled
activation is read twice: as the float residual stream and as the signs a binary convolution
packs. The ``cpu`` backend computes the pooling, the clamp and those packed signs in one numba
pass over the channels-last input, writing the bits inside the reader's zero border (as
:func:`~bnn_lab.kernels.binary_conv2d` with ``out_padding``); elsewhere the same values come from
torch operations. ``max`` is exact, so both paths give the same floats and bits.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .conv import PackedConv2dInput, _pair, _with_border, next_layer_input, packed_output, threshold_values
from .registry import resolve_backend


def _pool_geometry(hw, kernel, stride, padding) -> tuple[int, int]:
    out = tuple((hw[d] + 2 * padding[d] - kernel[d]) // stride[d] + 1 for d in range(2))
    if (
        min(out) < 1
        or min(kernel) < 1
        or min(stride) < 1
        or min(padding) < 0
        or any(2 * padding[d] > kernel[d] for d in range(2))
    ):
        raise ValueError(f"invalid max-pooling: input {tuple(hw)}, kernel {kernel}, stride {stride}, padding {padding}")
    return out


def _pool_args(kernel_size, stride, padding, clamp, out_padding):
    """(kernel, stride, padding, bits' border, (lo, hi)) as pairs and tuples; stride None: the kernel."""
    kernel = _pair(kernel_size, "kernel_size")
    stride = kernel if stride is None else _pair(stride, "stride")
    bit_pads = (0, 0, 0, 0) if out_padding is None else tuple(out_padding)
    lohi = clamp if clamp is not None else (-np.inf, np.inf)
    return kernel, stride, _pair(padding, "padding"), bit_pads, lohi


def max_pool2d_clamp(
    x: torch.Tensor,
    kernel_size,
    stride=None,
    padding=0,
    clamp: tuple[float, float] | None = None,
    *,
    bits_threshold: torch.Tensor | float | None = None,
    out_padding: tuple[int, int, int, int] | None = None,
    backend: str = "auto",
):
    """``clamp(F.max_pool2d(x, kernel_size, stride, padding), lo, hi)`` (``clamp`` None: no clamp).

    With ``bits_threshold`` (per channel, or a float) it returns the pair (that output, the signs of
    ``output - bits_threshold`` packed along the channels for a binary convolution, a
    :class:`PackedConv2dInput` inside a zero border of ``out_padding = (top, bottom, left, right)``).
    The ``cpu`` backend does it in one pass over a channels-last float32 CPU input (dilation 1, floor
    mode) and returns a channels-last output; any other input goes through torch operations.
    """
    kernel, stride, padding, bit_pads, (lo, hi) = _pool_args(kernel_size, stride, padding, clamp, out_padding)
    n, c, h, w = x.shape
    fast = (
        x.dtype == torch.float32
        and x.device.type == "cpu"
        and x.dim() == 4
        and x.permute(0, 2, 3, 1).is_contiguous()
        and resolve_backend(backend, x.device) == "cpu"
    )
    if not fast:
        out = F.max_pool2d(x, kernel, stride, padding)
        if clamp is not None:
            out = out.clamp(lo, hi)
        if bits_threshold is None:
            return out
        t = torch.from_numpy(threshold_values(bits_threshold, c)).to(out.device)
        bits = next_layer_input(out - t.view(1, -1, 1, 1))
        return out, (_with_border(bits, bit_pads) if bit_pads != (0, 0, 0, 0) else bits)
    pool = _CpuPool(n, (c, h, w), kernel, stride, padding, (lo, hi), bits_threshold, bit_pads)
    pool.images(x, 0, n)
    return pool.result()


class _CpuPool:
    """The ``cpu`` path of :func:`max_pool2d_clamp`: its output buffers, filled a range of images at a
    time by :meth:`images` (any order, any thread: each range writes only its own rows)."""

    def __init__(self, n, chw, kernel, stride, padding, lohi, bits_threshold, bit_pads) -> None:
        self.n, (self.c, self.h, self.w) = n, chw
        self.kernel, self.stride, self.padding, (self.lo, self.hi) = kernel, stride, padding, lohi
        self.out_hw = _pool_geometry((self.h, self.w), kernel, stride, padding)
        self.per_image = self.out_hw[0] * self.out_hw[1]
        self.y = np.empty((n * self.per_image, self.c), dtype=np.float32)
        self.threshold = self.packed = None
        self.bit_pads = bit_pads
        if bits_threshold is not None:
            self.threshold = threshold_values(bits_threshold, self.c)
            self.packed = packed_output(n, self.out_hw, self.c, bit_pads)

    def images(self, x: torch.Tensor, first: int, stop: int) -> None:
        """Pool images ``first .. stop - 1``, given as ``x`` (stop - first, C, H, W), channels-last float32."""
        from .backends import numba_cpu

        rows = slice(first * self.per_image, stop * self.per_image)
        bits = bit_rows = None
        if self.packed is not None and self.packed[2] is None:  # no border: pixel i is bit row i
            bits = self.packed[1][rows]
        elif self.packed is not None:
            bits, bit_rows = self.packed[1], self.packed[2][rows]
        numba_cpu.max_pool_clamp_into(
            x.detach().permute(0, 2, 3, 1).numpy().reshape(-1, self.c),
            stop - first,
            (self.h, self.w),
            self.kernel,
            self.stride,
            self.padding,
            self.out_hw,
            self.lo,
            self.hi,
            self.y[rows],
            bits,
            self.threshold,
            bit_rows,
        )

    def result(self):
        ho, wo = self.out_hw
        out = torch.from_numpy(self.y.reshape(self.n, ho, wo, self.c).transpose(0, 3, 1, 2))
        if self.packed is None:
            return out
        return out, PackedConv2dInput(self.packed[0], self.c, self.bit_pads, self.packed[3])


def max_pool2d_clamp_by_image(
    image: Callable[[int], torch.Tensor],
    n: int,
    chw: tuple[int, int, int],
    kernel_size,
    stride=None,
    padding=0,
    clamp: tuple[float, float] | None = None,
    *,
    bits_threshold: torch.Tensor | float | None = None,
    out_padding: tuple[int, int, int, int] | None = None,
    run: Callable[[Callable[[int], None], int], None] | None = None,
):
    """:func:`max_pool2d_clamp` (``cpu`` backend) of a batch of ``n`` images of shape ``chw`` that come
    one at a time: ``image(i)`` makes image ``i``, (1, C, H, W) channels-last float32, and it is pooled
    at once, while it is still in cache. ``run(fn, n)`` calls ``fn(i)`` once for every ``i``, in any
    order and on any thread (``thread_pools.deal``); default: in turn on this thread."""
    kernel, stride, padding, bit_pads, (lo, hi) = _pool_args(kernel_size, stride, padding, clamp, out_padding)
    pool = _CpuPool(n, chw, kernel, stride, padding, (lo, hi), bits_threshold, bit_pads)

    def one(i: int) -> None:
        x = image(i)
        if x.shape != (1, *chw) or x.dtype != torch.float32 or not x.permute(0, 2, 3, 1).is_contiguous():
            raise ValueError(f"image {i}: expected channels-last float32 {(1, *chw)}, got {x.dtype} {tuple(x.shape)}")
        pool.images(x, i, i + 1)

    if run is None:
        for i in range(n):
            one(i)
    else:
        run(one, n)
    return pool.result()

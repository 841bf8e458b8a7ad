"""Max-pooling, a clamping activation and the next binary convolution's packed input in one pass.

In a binary network's stem (float convolution -> max-pooling -> clamping activation) the pooled
activation is read twice: as the float residual stream and as the signs a binary convolution
packs. The ``cpu`` backend computes the pooling, the clamp and those packed signs in one numba
pass over the channels-last input, writing the bits inside the reader's zero border (as
:func:`~bnn_lab.kernels.binary_conv2d` with ``out_padding``); elsewhere the same values come from
torch operations. ``max`` is exact, so both paths give the same floats and bits.
"""

from __future__ import annotations

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
    kernel = _pair(kernel_size, "kernel_size")
    stride = kernel if stride is None else _pair(stride, "stride")
    padding = _pair(padding, "padding")
    bit_pads = (0, 0, 0, 0) if out_padding is None else tuple(out_padding)
    lo, hi = clamp if clamp is not None else (-np.inf, np.inf)
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
    from .backends import numba_cpu

    out_hw = _pool_geometry((h, w), kernel, stride, padding)
    y = np.empty((n * out_hw[0] * out_hw[1], c), dtype=np.float32)
    threshold = packed = None
    if bits_threshold is not None:
        threshold = threshold_values(bits_threshold, c)
        packed = packed_output(n, out_hw, c, bit_pads)
    numba_cpu.max_pool_clamp_into(
        x.detach().permute(0, 2, 3, 1).numpy().reshape(-1, c),
        n,
        (h, w),
        kernel,
        stride,
        padding,
        out_hw,
        lo,
        hi,
        y,
        None if packed is None else packed[1],
        threshold,
        None if packed is None else packed[2],
    )
    out = torch.from_numpy(y.reshape(n, out_hw[0], out_hw[1], c).transpose(0, 3, 1, 2))
    if packed is None:
        return out
    return out, PackedConv2dInput(packed[0], c, bit_pads, packed[3])

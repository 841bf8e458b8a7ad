"""A packed convolution whose output is the next binary layer's packed input."""

from __future__ import annotations

import torch
from torch import nn

from .. import kernels
from ..kernels.conv import PackedConv2dInput
from .packed_layers import PackedBinaryConv2d


class PackedConv2dToBits(nn.Module):
    """A packed convolution whose output leaves as packed bits: ``[sgn * acc >= thr]`` per channel,
    written inside the zero border ``out_padding`` (the padding of the convolution that reads them,
    which then takes them as they lie)."""

    def __init__(
        self,
        conv: PackedBinaryConv2d,
        sgn: torch.Tensor,
        thr: torch.Tensor,
        out_padding: tuple[int, int, int, int] | None = None,
    ) -> None:
        super().__init__()
        self.conv = conv
        self.out_padding = out_padding
        self.register_buffer("sgn", sgn.to(torch.int32).contiguous())
        self.register_buffer("thr", thr.to(torch.int32).contiguous())
        self._epilogue: kernels.ThresholdEpilogue | None = None

    def forward(self, x) -> PackedConv2dInput:
        c = self.conv
        if isinstance(x, torch.Tensor) and c.threshold is not None:
            x = x - c.threshold.view(1, -1, 1, 1)
        if self._epilogue is None or self._epilogue.sgn is not self.sgn or self._epilogue.thr is not self.thr:
            self._epilogue = kernels.ThresholdEpilogue(self.sgn, self.thr)  # (constants converted once)
        return kernels.binary_conv2d_bits(
            x,
            c.packed_weight(),
            self._epilogue,
            c.stride,
            c.padding,
            c.dilation,
            backend=c.backend,
            out_padding=self.out_padding,
        )

    def extra_repr(self) -> str:
        return "output: packed bits (per-channel integer thresholds)"

"""Deployed binary layers: 1 bit per weight, XNOR + popcount kernels, float epilogue.

A packed layer stores its weight signs as int32 words (``bnn_lab.kernels.pack_signs`` of
the flattened weight, 32 weights a word) and computes the exact integer product of
sign(input) and sign(weight) with the binary kernels; then, in float, the per-channel
scale, the bias and the rest of the network as trained. Zero padding is exact (the
kernels correct the border, see ``bnn_lab.kernels.conv``).

Inputs are binarized as sign(x - threshold): the threshold is 0, or RSign's learned
per-channel threshold.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import kernels


class _PackedMixin:
    """Buffers and epilogue shared by the packed layers."""

    def _init_common(
        self,
        out_features: int,
        weight_bits: torch.Tensor,
        k: int,
        bias,
        scale_vector,
        threshold,
        gate: nn.Module | None,
        backend: str,
    ) -> None:
        self.k = int(k)
        self.backend = backend
        self.register_buffer("weight_bits", weight_bits.to(torch.int32).contiguous())
        self.register_buffer("bias", None if bias is None else bias.detach().clone().float())
        self.register_buffer("scale", None if scale_vector is None else scale_vector.detach().clone().float())
        self.register_buffer("threshold", None if threshold is None else threshold.detach().clone().float())
        self.gate = gate

    def _epilogue(self, acc: torch.Tensor, x_real: torch.Tensor, channel_dim: int) -> torch.Tensor:
        out = acc.to(x_real.dtype if x_real.is_floating_point() else torch.float32)
        shape = [1] * out.dim()
        shape[channel_dim] = -1
        if self.scale is not None:
            out = out * self.scale.view(shape)
        if self.gate is not None:
            out = self.gate(out, None, x_real)
        if self.bias is not None:
            out = out + self.bias.view(shape)
        return out


class PackedBinaryConv2d(_PackedMixin, nn.Module):
    fused_epilogue = False  # ``scale * acc + bias`` rounded once: a BatchNorm folded in (export.graph)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride,
        padding,
        dilation,
        weight_bits: torch.Tensor,
        bias=None,
        scale_vector=None,
        threshold=None,
        gate=None,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding, self.dilation = (
            tuple(kernel_size),
            tuple(stride),
            tuple(padding),
            tuple(dilation),
        )
        self._init_common(
            out_channels,
            weight_bits,
            in_channels * kernel_size[0] * kernel_size[1],
            bias,
            scale_vector,
            threshold,
            gate,
            backend,
        )
        self._packed: kernels.PackedConv2dWeight | None = None

    def packed_weight(self) -> kernels.PackedConv2dWeight:
        if self._packed is None or self._packed.rows.device != self.weight_bits.device:
            self._packed = kernels.PackedConv2dWeight.from_flat_bits(
                self.weight_bits, self.in_channels, self.kernel_size
            )
        return self._packed

    def input_pads(self) -> tuple[int, int, int, int]:
        """(top, bottom, left, right): the zero border this convolution reads its input with."""
        return kernels.conv_pads(self.kernel_size, self.stride, self.padding, self.dilation)

    def _load_from_state_dict(self, *args, **kwargs):
        self._packed = None  # new bits: rebuild the kernel layout
        return super()._load_from_state_dict(*args, **kwargs)

    def forward(self, x: torch.Tensor | kernels.PackedConv2dInput) -> torch.Tensor:
        """``x``: the real input, or its signs already packed (``bnn_lab.export.graph``). Without a
        gating scale, a float32 result is computed with the scale and bias in the kernel's epilogue."""
        packed_in = isinstance(x, kernels.PackedConv2dInput)
        u = x if packed_in or self.threshold is None else x - self.threshold.view(1, -1, 1, 1)
        conv = (self.packed_weight(), self.stride, self.padding, self.dilation)
        if self.gate is None and (packed_in or x.dtype == torch.float32):
            epilogue = kernels.AffineEpilogue(self.scale, self.bias, fused=self.fused_epilogue)
            return kernels.binary_conv2d_affine(u, conv[0], epilogue, *conv[1:], backend=self.backend)
        out = kernels.binary_conv2d(u, *conv, backend=self.backend)
        return self._epilogue(out, torch.zeros((), dtype=torch.float32) if packed_in else x, 1)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, packed=1 bit/weight"
        )


class PackedBinaryLinear(_PackedMixin, nn.Module):
    def __init__(
        self,
        in_features: int,
        out_features: int,
        weight_bits: torch.Tensor,
        bias=None,
        scale_vector=None,
        threshold=None,
        gate=None,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self._init_common(out_features, weight_bits, in_features, bias, scale_vector, threshold, gate, backend)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x if self.threshold is None else x - self.threshold
        lead = u.shape[:-1]
        acc = kernels.binary_matmul(
            kernels.pack_signs(u.reshape(-1, self.in_features)), self.weight_bits, self.k, backend=self.backend
        )
        return self._epilogue(acc.reshape(*lead, self.out_features), x, -1)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, packed=1 bit/weight"


__all__ = ["PackedBinaryConv2d", "PackedBinaryLinear"]

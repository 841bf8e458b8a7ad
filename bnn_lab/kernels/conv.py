"""Exact binary convolution on packed operands.

Padding. ``F.conv2d`` pads with 0, a value that ``{-1, +1}`` bits cannot hold. We pad
with -1 instead (all-zero bits, which is also what a zero-filled packed buffer holds)
and correct the border afterwards::

    conv_zero_pad(x, w) = conv_{-1 pad}(x, w) + conv(mask, w)

where ``mask`` is 1 at padded positions (every channel) and 0 inside: at a padded tap
the -1-padded product is ``-w`` and the zero-padded one is 0, a difference of ``+w``.
The correction depends only on the weights and the geometry (input size, stride,
padding, dilation), never on ``x``: it is computed once with ``F.conv2d`` of a
one-channel mask against the per-tap channel sums of ``sign(w)`` and cached in the
:class:`PackedConv2dWeight`. It is zero away from the border.

Layout. The input is packed along channels, per pixel: channel ``c`` in bit ``c % 32``
of int32 word ``c // 32``, and ``CW = 2 * ceil(C / 64)`` words per pixel (rounded up
to an even count so that a pixel is whole uint64 words for the CPU kernel). A patch
row is the concatenation over the taps ``(i, j)`` (row-major) of the ``CW`` words of
the pixel under that tap, so im2col is a gather of whole words (the ``cpu`` backend
does not even materialise it: its GEMM reads the patches from the packed input). The
weights are packed in the same tap-major order (:attr:`PackedConv2dWeight.rows`).
Channel-padding bits are 0 in both operands, so the matmul with the true
``K = C * kh * kw`` is exact.
"""

from __future__ import annotations

import functools
import weakref
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .packing import num_words, pack_signs, unpack_signs
from .reference import fma32
from .registry import CONV_BACKENDS, ConvImplementation, binary_matmul, resolve_backend


def words_per_pixel(channels: int) -> int:
    """int32 words holding the channel bits of one pixel (or tap): ``2 * ceil(C / 64)``."""
    return 2 * ((channels + 63) // 64)


def _pair(v, name: str) -> tuple[int, int]:
    if isinstance(v, int) and not isinstance(v, bool):
        return (v, v)
    if isinstance(v, (tuple, list)) and len(v) == 2 and all(isinstance(e, int) for e in v):
        return (int(v[0]), int(v[1]))
    raise TypeError(f"{name} must be an int or a pair of ints, got {v!r}")


@dataclass(eq=False)
class PackedConv2dInput:
    """Signs of an (N, C, H, W) activation packed along channels: ``bits`` is int32
    (N, H + top + bottom, W + left + right, ceil(C / 32)), the image inside a border of zero bits
    (-1 values) of ``pads = (top, bottom, left, right)`` pixels (none by default); ``channels`` is
    the true C. Made by :func:`pack_conv2d_input`, or by a binary convolution that writes the next
    one's padded input directly (``out_padding`` of :func:`binary_conv2d`)."""

    bits: torch.Tensor
    channels: int
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    _flat64: np.ndarray | None = field(
        default=None, repr=False
    )  # the cpu kernels' view of ``bits``, when they wrote it

    @property
    def shape(self) -> tuple[int, int, int, int]:
        n, h, w, _ = self.bits.shape
        top, bottom, left, right = self.pads
        return (n, self.channels, h - top - bottom, w - left - right)

    def unpadded(self) -> torch.Tensor:
        """The bits of the image without the border: (N, H, W, words), a view."""
        top, bottom, left, right = self.pads
        _, h, w, _ = self.bits.shape
        return self.bits[:, top : h - bottom, left : w - right]


def threshold_values(t: torch.Tensor | float, channels: int) -> np.ndarray:
    """A per-channel threshold (a tensor of ``channels`` values, or one float for all) as float32 (C,)."""
    t = torch.full((channels,), float(t)) if not isinstance(t, torch.Tensor) else t.detach().reshape(-1)
    return t.to(torch.float32).cpu().contiguous().numpy()


@dataclass(eq=False)
class AffineEpilogue:
    """What :func:`binary_conv2d` returns instead of the int32 product: float32
    ``clamp(acc * scale[o] + bias[o] + residual, lo, hi)``: a packed layer's per-channel scale and
    bias (either may be None), then optionally a residual addition (a float32 tensor of the output's
    shape) and a clamping activation (``clamp = (lo, hi)``, Hardtanh or ReLU). With
    ``bits_threshold`` (per channel, or 0) the result is a pair: the float32 output and the signs of
    ``output - bits_threshold`` packed for the next binary convolution (a :class:`PackedConv2dInput`).
    ``fused``: ``acc * scale + bias`` is rounded once, a fused multiply-add, as torch's CPU BatchNorm
    rounds ``y * alpha + beta`` (a BatchNorm folded into the epilogue gives its very outputs).
    The ``cpu`` backend computes it inside the GEMM, rounding as this reference does."""

    scale: torch.Tensor | None = None
    bias: torch.Tensor | None = None
    residual: torch.Tensor | None = None
    clamp: tuple[float, float] | None = None
    bits_threshold: torch.Tensor | float | None = None
    fused: bool = False
    _arrays: dict = field(default_factory=dict, init=False, repr=False)

    def with_residual(self, residual: torch.Tensor | None) -> AffineEpilogue:
        """This epilogue with another residual; the constants' arrays (:meth:`arrays`) are shared,
        so a layer that keeps one epilogue converts its scale, bias and threshold once."""
        ep = object.__new__(AffineEpilogue)
        ep.__dict__.update(self.__dict__, residual=residual)
        return ep

    def threshold_array(self, channels: int) -> np.ndarray:
        return threshold_values(self.bits_threshold, channels)

    def apply(self, acc: torch.Tensor):
        out = self._apply_float(acc)
        if self.bits_threshold is None:
            return out
        t = torch.from_numpy(self.threshold_array(out.shape[1])).to(out.device)
        return out, next_layer_input(out - t.view(1, -1, 1, 1))

    def _apply_float(self, acc: torch.Tensor) -> torch.Tensor:
        out = acc.to(torch.float32)
        if self.fused and self.scale is not None and self.bias is not None:
            out = fused_multiply_add(out, self.scale.view(1, -1, 1, 1), self.bias.view(1, -1, 1, 1))
        else:
            if self.scale is not None:
                out = out * self.scale.view(1, -1, 1, 1)
            if self.bias is not None:
                out = out + self.bias.view(1, -1, 1, 1)
        if self.residual is not None:
            out = out + self.residual
        if self.clamp is not None:
            out = out.clamp(*self.clamp)
        return out

    def arrays(self, channels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """float32 (scale, bias, bits threshold or None) for ``channels`` outputs, converted once."""
        got = self._arrays.get(channels)
        if got is None:
            scale = torch.ones(channels) if self.scale is None else self.scale
            bias = torch.zeros(channels) if self.bias is None else self.bias
            got = self._arrays[channels] = (
                scale.detach().to(torch.float32).contiguous().numpy(),
                bias.detach().to(torch.float32).contiguous().numpy(),
                None if self.bits_threshold is None else self.threshold_array(channels),
            )
        return got

    def residual_rows(self, shape) -> np.ndarray | None:
        """The residual as (N * H * W, O) float32 rows in the kernels' pixel-major order (None without)."""
        if self.residual is None:
            return None
        r = self.residual
        if tuple(r.shape) != tuple(shape) or r.dtype != torch.float32:
            raise ValueError(f"the residual must be float32 {tuple(shape)}, got {r.dtype} {tuple(r.shape)}")
        rows = r.permute(0, 2, 3, 1)
        if not rows.is_contiguous():
            rows = rows.contiguous()
        return rows.numpy().reshape(-1, shape[1])


@dataclass(eq=False)
class ThresholdEpilogue:
    """What :func:`binary_conv2d` returns instead of the int32 product: the bits
    ``sgn[o] * acc >= thr[o]`` (int32 per channel) packed along channels, a
    :class:`PackedConv2dInput` for the next binary convolution (``bnn_lab.export.graph``)."""

    sgn: torch.Tensor
    thr: torch.Tensor
    _arrays: tuple = field(default=(), init=False, repr=False)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """int32 (sgn, thr), converted once."""
        if not self._arrays:
            self._arrays = tuple(t.to(torch.int32).contiguous().numpy() for t in (self.sgn, self.thr))
        return self._arrays

    def apply(self, acc: torch.Tensor) -> PackedConv2dInput:
        return next_layer_input(acc * self.sgn.view(1, -1, 1, 1) - self.thr.view(1, -1, 1, 1))  # bit: >= 0


def fused_multiply_add(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """float32 ``a * b + c`` rounded once (broadcast): on the CPU exactly (``reference.fma32``),
    elsewhere through float64 (exact but for a tie in float32 after the float64 rounding)."""
    if a.device.type == "cpu":
        args = (t.detach().to(torch.float32).numpy() for t in torch.broadcast_tensors(a, b, c))
        return torch.from_numpy(fma32(*args))
    return (a.double() * b.double() + c.double()).float()


def pack_conv2d_input(x: torch.Tensor) -> PackedConv2dInput:
    """Pack the signs of ``x`` (N, C, H, W) along channels (see the module docstring)."""
    if x.dim() != 4:
        raise ValueError(f"expected an (N, C, H, W) tensor, got shape {tuple(x.shape)}")
    return PackedConv2dInput(pack_signs(x.permute(0, 2, 3, 1)), x.shape[1])


def next_layer_input(x: torch.Tensor) -> PackedConv2dInput:
    """:func:`pack_conv2d_input` with the ``words_per_pixel`` words per pixel the kernels hand from
    one binary convolution to the next (the extra word zero)."""
    packed = pack_conv2d_input(x)
    words = words_per_pixel(packed.channels)
    return PackedConv2dInput(F.pad(packed.bits, (0, words - packed.bits.shape[-1])), packed.channels)


@dataclass(eq=False)
class PackedConv2dWeight:
    """Convolution weights packed for :func:`binary_conv2d`.

    Attributes:
        rows: int32 (O, kh * kw * words_per_tap), tap-major channel-packed sign bits
            (``words_per_tap = 2 * ceil(C / 64)``; the unused bits are 0).
        in_channels: C.
        kernel_size: (kh, kw).
        tap_sums: int32 (O, kh, kw), ``sum_c sign(w[o, c, i, j])`` (for the border
            correction).
    """

    rows: torch.Tensor
    in_channels: int
    kernel_size: tuple[int, int]
    tap_sums: torch.Tensor
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def out_channels(self) -> int:
        return self.rows.shape[0]

    @property
    def k(self) -> int:
        """True reduction length ``C * kh * kw``."""
        return self.in_channels * self.kernel_size[0] * self.kernel_size[1]

    @property
    def words_per_tap(self) -> int:
        """int32 words per tap (and per packed input pixel): ``2 * ceil(C / 64)``."""
        return words_per_pixel(self.in_channels)

    @property
    def device(self) -> torch.device:
        return self.rows.device

    @classmethod
    def from_weight(cls, weight: torch.Tensor) -> PackedConv2dWeight:
        """From a real (O, C, kh, kw) weight (only its signs are used)."""
        if weight.dim() != 4:
            raise ValueError(f"expected an (O, C, kh, kw) weight, got shape {tuple(weight.shape)}")
        weight = weight.detach()
        o, c, kh, kw = weight.shape
        taps = pack_signs(weight.permute(0, 2, 3, 1))  # (O, kh, kw, ceil(C / 32))
        taps = F.pad(taps, (0, words_per_pixel(c) - taps.shape[-1]))
        rows = taps.reshape(o, kh * kw * words_per_pixel(c))
        tap_sums = torch.where(weight >= 0, 1, -1).sum(dim=1, dtype=torch.int32)
        return cls(rows.contiguous(), c, (kh, kw), tap_sums)

    @classmethod
    def from_flat_bits(cls, bits: torch.Tensor, in_channels: int, kernel_size) -> PackedConv2dWeight:
        """From ``pack_signs(w.reshape(O, -1))``: int32 (O, ceil(C * kh * kw / 32)) in
        PyTorch's (c, i, j) flattening order."""
        kh, kw = _pair(kernel_size, "kernel_size")
        k = in_channels * kh * kw
        if bits.dim() != 2 or bits.dtype != torch.int32 or bits.shape[1] != num_words(k):
            raise ValueError(
                f"expected int32 (O, {num_words(k)}) packed weights for C={in_channels}, kernel {kh}x{kw}, "
                f"got {bits.dtype} {tuple(bits.shape)}"
            )
        signs = unpack_signs(bits, k, dtype=torch.int8).reshape(bits.shape[0], in_channels, kh, kw)
        return cls.from_weight(signs)

    def to(self, device) -> PackedConv2dWeight:
        return PackedConv2dWeight(self.rows.to(device), self.in_channels, self.kernel_size, self.tap_sums.to(device))

    def cached(self, key, make):
        """``make()`` once per ``key`` (backend-specific layouts of these weights)."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def border_correction(self, in_hw, stride, pads, dilation) -> torch.Tensor | None:
        """int32 (H_out * W_out, O) term ``conv(mask, w)`` for zero padding, pixel-major
        like the matmul output (cached); ``None`` without padding.
        ``pads = (top, bottom, left, right)``."""
        if not any(pads):
            return None
        key = ("border", tuple(in_hw), tuple(stride), tuple(pads), tuple(dilation))
        corr = self._cache.get(key)
        if corr is None:
            top, bottom, left, right = pads
            h, w = in_hw
            mask = torch.ones((1, 1, h + top + bottom, w + left + right), dtype=torch.float64, device=self.device)
            mask[:, :, top : top + h, left : left + w] = 0
            kern = self.tap_sums.to(torch.float64).unsqueeze(1)  # (O, 1, kh, kw)
            c = F.conv2d(mask, kern, stride=stride, dilation=dilation)  # exact: small integers
            corr = c.round().to(torch.int32).reshape(self.out_channels, -1).T.contiguous()
            self._cache[key] = corr
        return corr


def pack_conv2d_weight(weight: torch.Tensor) -> PackedConv2dWeight:
    """Pack a real (O, C, kh, kw) convolution weight (signs) for :func:`binary_conv2d`."""
    return PackedConv2dWeight.from_weight(weight)


# id(tensor) -> (weakref, key, packed): conversions of plain weight tensors, reused while
# the tensor is alive and unmodified (its ``_version`` is part of the key).
_WEIGHT_CACHE: dict[int, tuple] = {}


def _packed_weight(weight, in_channels: int, kernel_size) -> PackedConv2dWeight:
    if isinstance(weight, PackedConv2dWeight):
        return weight
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"weight must be a PackedConv2dWeight or a tensor, got {type(weight).__name__}")
    if weight.dtype == torch.int32 and weight.dim() == 2:
        if kernel_size is None:
            raise ValueError("kernel_size is required when weight is a flat packed (O, words) tensor")
        ks = _pair(kernel_size, "kernel_size")
    elif weight.dim() == 4:
        ks = (weight.shape[2], weight.shape[3])
    else:
        raise ValueError(
            "weight must be an (O, C, kh, kw) real tensor, an int32 (O, ceil(C*kh*kw/32)) packed tensor "
            f"or a PackedConv2dWeight; got {weight.dtype} {tuple(weight.shape)}"
        )
    key = (weight._version, tuple(weight.shape), weight.dtype, weight.device, weight.data_ptr(), in_channels, ks)
    entry = _WEIGHT_CACHE.get(id(weight))
    if entry is not None and entry[0]() is weight and entry[1] == key:
        return entry[2]
    if weight.dim() == 4:
        packed = PackedConv2dWeight.from_weight(weight)
    else:
        packed = PackedConv2dWeight.from_flat_bits(weight, in_channels, ks)
    ident = id(weight)
    ref = weakref.ref(weight, lambda _r, i=ident: _WEIGHT_CACHE.pop(i, None))
    _WEIGHT_CACHE[ident] = (ref, key, packed)
    return packed


def conv_pads(kernel_size, stride, padding, dilation) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) zero padding of a convolution (``padding`` an int, a pair,
    ``"valid"`` or ``"same"``, as in ``F.conv2d``); it does not depend on the input size."""
    kh, kw = kernel_size
    dh, dw = dilation
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0, 0)
        elif padding == "same":
            if tuple(stride) != (1, 1):
                raise ValueError("padding='same' needs stride 1 (as in torch)")
            th, tw = dh * (kh - 1), dw * (kw - 1)
            pads = (th // 2, th - th // 2, tw // 2, tw - tw // 2)
            padding = None
        else:
            raise ValueError(f"padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
    if padding is not None:
        ph, pw = _pair(padding, "padding")
        pads = (ph, ph, pw, pw)
    if min(pads) < 0 or min(stride) < 1 or min(dilation) < 1:
        raise ValueError(f"invalid conv geometry: padding={pads}, stride={stride}, dilation={dilation}")
    return pads


def _conv_geometry(in_hw, kernel_size, stride, padding, dilation):
    kh, kw = kernel_size
    dh, dw = dilation
    pads = conv_pads(kernel_size, stride, padding, dilation)
    h, w = in_hw
    hp, wp = h + pads[0] + pads[1], w + pads[2] + pads[3]
    h_out = (hp - dh * (kh - 1) - 1) // stride[0] + 1
    w_out = (wp - dw * (kw - 1) - 1) // stride[1] + 1
    if h_out < 1 or w_out < 1:
        raise ValueError(f"input {h}x{w} (padded {hp}x{wp}) is smaller than the dilated kernel")
    return pads, (h_out, w_out)


_GATHER_INDEX: dict[tuple, torch.Tensor] = {}


def _gather_index(padded_hw, kernel_size, stride, dilation, out_hw, device) -> torch.Tensor:
    """Flat pixel index (H_out * W_out * kh * kw,) into the padded map, patch-major."""
    key = (tuple(padded_hw), tuple(kernel_size), tuple(stride), tuple(dilation), tuple(out_hw), device)
    idx = _GATHER_INDEX.get(key)
    if idx is None:
        wp = padded_hw[1]
        oh = torch.arange(out_hw[0], device=device) * stride[0]
        ow = torch.arange(out_hw[1], device=device) * stride[1]
        ti = torch.arange(kernel_size[0], device=device) * dilation[0]
        tj = torch.arange(kernel_size[1], device=device) * dilation[1]
        rows = oh[:, None, None, None] + ti[None, None, :, None]
        cols = ow[None, :, None, None] + tj[None, None, None, :]
        idx = (rows * wp + cols).reshape(-1)
        _GATHER_INDEX[key] = idx
    return idx


@functools.lru_cache(maxsize=64)
def _bit_row_map(n: int, out_hw: tuple[int, int], pads: tuple[int, int, int, int]) -> np.ndarray:
    """Row of an (N * Hp * Wp, words) packed buffer that each of the N * H * W pixels goes to, inside
    the zero border ``pads``: the offsets of an unstrided 1x1 convolution, shifted."""
    from .backends import numba_cpu

    top, bottom, left, right = pads
    hp, wp = out_hw[0] + top + bottom, out_hw[1] + left + right
    rows = numba_cpu.conv_row_offsets(n, (hp, wp), 1, (1, 1), out_hw) + (top * wp + left)
    return rows


def packed_output(n: int, out_hw: tuple[int, int], channels: int, pads):
    """A zero-filled packed output of ``channels`` for ``out_hw`` images inside the zero border ``pads``
    (top, bottom, left, right), for the ``cpu`` kernels to write: the int32 (N, Hp, Wp, words) tensor, its
    (N * Hp * Wp, words) uint32 view, the row of that view each pixel goes to (None without a border)
    and its flat uint64 view (what a next convolution's kernel reads)."""
    pads = tuple(pads)
    top, bottom, left, right = pads
    hp, wp = out_hw[0] + top + bottom, out_hw[1] + left + right
    rows = _bit_row_map(n, tuple(out_hw), pads) if pads != (0, 0, 0, 0) else None
    arr = np.zeros((n, hp, wp, words_per_pixel(channels)), dtype=np.int32)
    return torch.from_numpy(arr), arr.view(np.uint32).reshape(n * hp * wp, -1), rows, arr.view(np.uint64).reshape(-1)


def _with_border(packed: PackedConv2dInput, pads) -> PackedConv2dInput:
    """``packed`` (no border) inside a zero border of ``pads = (top, bottom, left, right)`` pixels."""
    top, bottom, left, right = pads
    return PackedConv2dInput(F.pad(packed.bits, (0, 0, left, right, top, bottom)), packed.channels, pads)


def _hashable(v):
    return tuple(v) if isinstance(v, list) else v


@dataclass(eq=False)
class _ConvPlan:
    """What one geometry of a convolution needs besides the input, computed once per weight and
    input size (cached with the weight): the geometry, the border correction and, for the ``cpu``
    backend, the GEMM's row offsets, segment layout and weight panels."""

    backend: str
    stride: tuple[int, int]
    dilation: tuple[int, int]
    pads: tuple[int, int, int, int]
    out_hw: tuple[int, int]
    corr: object = None
    geo: tuple = ()
    offs: np.ndarray | None = None
    panels: np.ndarray | None = None

    def bits_output(self, n: int, channels: int, pads):
        """:func:`packed_output` for this convolution's output size."""
        return packed_output(n, self.out_hw, channels, pads)

    @classmethod
    def make(cls, pw: PackedConv2dWeight, n, h, w, stride, padding, dilation, backend, device) -> _ConvPlan:
        stride = _pair(stride, "stride")
        dilation = _pair(dilation, "dilation")
        pads, out_hw = _conv_geometry((h, w), pw.kernel_size, stride, padding, dilation)
        name = resolve_backend(backend, device)
        corr = pw.border_correction((h, w), stride, pads, dilation)
        plan = cls(name, stride, dilation, pads, out_hw, corr)
        prepare = CONV_BACKENDS.get(name, GATHERED).prepare
        if prepare is not None:
            prepare(plan, pw, n, h, w, device)
        return plan


def numba_plan(plan: _ConvPlan, pw: PackedConv2dWeight, n: int, h: int, w: int, device) -> None:
    """The ``cpu`` GEMM's layout of a convolution: it reads each patch straight from the packed input, per
    kernel row one run of kw pixels x pw64 words (dw == 1), or one segment per tap (dilated rows)."""
    from .backends import numba_cpu

    if device.type != "cpu":
        raise ValueError(f"the 'cpu' backend needs CPU tensors, got {device}")
    pw64 = pw.words_per_tap // 2
    kh, kw = pw.kernel_size
    dh, dw = plan.dilation
    pads = plan.pads
    wp = w + pads[2] + pads[3]
    plan.geo = (kh, 1, kw * pw64, dh * wp * pw64, 0) if dw == 1 else (kh, kw, pw64, dh * wp * pw64, dw * pw64)
    plan.panels = pw.cached("cpu_panels", lambda: numba_cpu.to_panels(numba_cpu.as_u64_rows(pw.rows, kh * kw * pw64)))
    plan.offs = numba_cpu.conv_row_offsets(n, (h + pads[0] + pads[1], wp), pw64, plan.stride, plan.out_hw)
    if plan.corr is not None:  # only the border pixels' rows
        plan.corr = numba_cpu.compact_correction(plan.corr.numpy())


def _conv_inputs(x, weight, kernel_size, stride, padding, dilation, backend):
    """(packed weight, plan, (n, c, h, w)) of a call: the checks every entry point shares."""
    if isinstance(x, PackedConv2dInput):
        n, c, h, w = x.shape
        device = x.bits.device
    elif isinstance(x, torch.Tensor):
        if x.dim() != 4:
            raise ValueError(f"expected an (N, C, H, W) input, got shape {tuple(x.shape)}")
        n, c, h, w = x.shape
        device = x.device
    else:
        raise TypeError(f"x must be a tensor or a PackedConv2dInput, got {type(x).__name__}")
    pw = _packed_weight(weight, c, kernel_size)
    if pw.in_channels != c:
        raise ValueError(f"input has {c} channels but the weight expects {pw.in_channels}")
    if pw.device != device:
        raise ValueError(f"input is on {device} but the weight is on {pw.device}")
    try:
        key = ("plan", n, h, w, stride, padding, dilation, backend, device)
        plan = pw._cache.get(key)
    except TypeError:  # lists
        key = ("plan", n, h, w, _hashable(stride), _hashable(padding), _hashable(dilation), backend, device)
        plan = pw._cache.get(key)
    if plan is None:
        plans = [k for k in pw._cache if k[0] == "plan"]
        for k in plans[: max(len(plans) - 15, 0)]:  # a few input sizes per weight (the last batch of an epoch...)
            del pw._cache[k]
        plan = pw._cache[key] = _ConvPlan.make(pw, n, h, w, stride, padding, dilation, backend, device)
    return pw, plan, (n, c, h, w)


def _packed_padded_input(x, plan: _ConvPlan, words: int, pack):
    """(int32 channel-packed input padded with -1 (zero bits), its flat uint64 view written by the cpu kernels
    or None) for ``plan``: a packed input written padded by the layer before is used as it lies, a tensor
    packed by ``pack(x, pads, words)``, the backend's packing."""
    top, bottom, left, right = plan.pads
    if isinstance(x, PackedConv2dInput):
        if x.pads == plan.pads and x.bits.shape[-1] == words:
            src = x._flat64
            if src is not None and (src.ctypes.data != x.bits.data_ptr() or 2 * src.size != x.bits.numel()):
                src = None  # bits replaced since the kernel wrote them
            return x.bits, src
        return F.pad(x.unpadded(), (0, words - x.bits.shape[-1], left, right, top, bottom)), None
    return pack(x, plan.pads, words), None


def _pack_with_torch(x: torch.Tensor, pads, words: int) -> torch.Tensor:
    top, bottom, left, right = pads
    if not x.is_floating_point():
        x = x.to(torch.float32)
    xb = pack_signs(F.pad(x, (left, right, top, bottom), value=-1.0).permute(0, 2, 3, 1))
    return F.pad(xb, (0, words - xb.shape[-1]))


def numba_conv(x, pw: PackedConv2dWeight, plan: _ConvPlan, n: int, epilogue, bit_pads):
    """The ``cpu`` backend: numba GEMMs that read the patches from the packed input and apply the epilogue
    on their accumulators (int32 product, float32 affine (+ bits) or bits)."""
    from .backends import numba_cpu

    xb, src = _packed_padded_input(x, plan, pw.words_per_tap, numba_cpu.pack_channels)
    if src is None:
        src = xb.contiguous().numpy().view(np.uint64).reshape(-1)
    o, (h_out, w_out), corr = pw.out_channels, plan.out_hw, plan.corr
    p = h_out * w_out
    if isinstance(epilogue, ThresholdEpilogue):
        bits, words_view, bit_rows, flat = plan.bits_output(n, o, bit_pads)
        numba_cpu.gemm_bits_into(
            src, plan.offs, plan.panels, plan.geo, pw.k, words_view, *epilogue.arrays(), p, corr, bit_rows
        )
        return PackedConv2dInput(bits, o, bit_pads, flat)
    dtype = np.float32 if isinstance(epilogue, AffineEpilogue) else np.int32
    out = np.empty((n * p, o), dtype=dtype)
    result = torch.from_numpy(out.reshape(n, h_out, w_out, o).transpose(0, 3, 1, 2))  # NCHW, channels-last memory
    if epilogue is None:
        numba_cpu.gemm_into(src, plan.offs, plan.panels, plan.geo, pw.k, out, p, corr)
        return result
    lo, hi = epilogue.clamp if epilogue.clamp is not None else (-np.inf, np.inf)
    scale, bias, threshold = epilogue.arrays(o)
    bits = words_view = bit_rows = flat = None
    if threshold is not None:
        bits, words_view, bit_rows, flat = plan.bits_output(n, o, bit_pads)
    numba_cpu.gemm_affine_into(
        src,
        plan.offs,
        plan.panels,
        plan.geo,
        pw.k,
        out,
        scale,
        bias,
        p,
        corr,
        epilogue.residual_rows((n, o, h_out, w_out)),
        lo,
        hi,
        words_view,
        threshold,
        bit_rows,
        fused=epilogue.fused,
    )
    return result if bits is None else (result, PackedConv2dInput(bits, o, bit_pads, flat))


def _gathered_conv(x, pw: PackedConv2dWeight, plan: _ConvPlan, n: int, epilogue, bit_pads):
    """Any ``binary_matmul`` backend (``torch``, ``triton``, registered ones): the patches gathered from the
    packed input (im2col of whole words), one binary matmul, the border correction, then the epilogue."""
    xb, _ = _packed_padded_input(x, plan, pw.words_per_tap, _pack_with_torch)
    o, (h_out, w_out), words = pw.out_channels, plan.out_hw, pw.words_per_tap
    hp, wp = xb.shape[1], xb.shape[2]
    p = h_out * w_out
    idx = _gather_index((hp, wp), pw.kernel_size, plan.stride, plan.dilation, (h_out, w_out), xb.device)
    cols = xb.reshape(n, hp * wp, words)[:, idx].reshape(n * p, -1)
    out = binary_matmul(cols, pw.rows, pw.k, backend=plan.backend)  # (N * P, O): NHWC order
    if plan.corr is not None:
        out = out.reshape(n, p, o).add_(plan.corr)
    out = out.reshape(n, h_out, w_out, o).permute(0, 3, 1, 2)
    if epilogue is None:
        return out
    result = epilogue.apply(out)
    if bit_pads == (0, 0, 0, 0):
        return result
    if isinstance(result, tuple):  # (float output, bits)
        return result[0], _with_border(result[1], bit_pads)
    return _with_border(result, bit_pads) if isinstance(result, PackedConv2dInput) else result


#: the convolution of a backend without its own (``torch``, ``triton``, a matmul-only registered one)
GATHERED = ConvImplementation(_gathered_conv)


def _run(x, weight, stride, padding, dilation, kernel_size, backend, epilogue, out_padding):
    pw, plan, (n, _, _, _) = _conv_inputs(x, weight, kernel_size, stride, padding, dilation, backend)
    bit_pads = (0, 0, 0, 0) if out_padding is None else tuple(out_padding)
    return CONV_BACKENDS.get(plan.backend, GATHERED).run(x, pw, plan, n, epilogue, bit_pads)


def binary_conv2d(
    x,
    weight,
    stride=1,
    padding=0,
    dilation=1,
    groups: int = 1,
    *,
    kernel_size=None,
    backend: str = "auto",
) -> torch.Tensor:
    """Exact ``F.conv2d(sign(x), sign(w), stride=, padding=, dilation=)`` as int32.

    Args:
        x: real activation (N, C, H, W) (only the signs are used; ``sign(0) = +1``), or a
            :class:`PackedConv2dInput` from :func:`pack_conv2d_input` or a convolution before.
        weight: a :class:`PackedConv2dWeight` (fastest: see :func:`pack_conv2d_weight`);
            or an int32 (O, ceil(C * kh * kw / 32)) tensor from
            ``pack_signs(w.reshape(O, -1))`` together with ``kernel_size``; or a real
            (O, C, kh, kw) weight. Tensors are converted once and the conversion is
            cached while the tensor lives unmodified.
        stride, padding, dilation: as in ``F.conv2d`` (``padding`` may be an int, a
            pair, ``"valid"`` or ``"same"``). Zero padding is reproduced exactly: the
            input is padded with -1 and the border corrected (module docstring).
        groups: only 1 is supported.
        kernel_size: (kh, kw), needed only with flat packed weights.
        backend: a ``binary_matmul`` backend (``auto``: numba on CPU, triton on CUDA). The ``cpu``
            backend packs the input with numba and its GEMM reads the patches straight from the
            packed input (:data:`~bnn_lab.kernels.registry.CONV_BACKENDS`); the others gather them first.

    Returns:
        int32 (N, O, H_out, W_out) on the input's device, in ``torch.channels_last``
        memory format (the matmul produces one row of O channels per output pixel; call
        ``.contiguous()`` if NCHW memory is needed).

    :func:`binary_conv2d_affine`, :func:`binary_conv2d_affine_bits` and :func:`binary_conv2d_bits`
    return what the next layer needs instead of the int32 product.
    """
    if groups != 1:
        raise NotImplementedError(f"binary_conv2d supports groups=1 only, got groups={groups}")
    return _run(x, weight, stride, padding, dilation, kernel_size, backend, None, None)


def binary_conv2d_affine(
    x, weight, epilogue: AffineEpilogue, stride=1, padding=0, dilation=1, *, backend: str = "auto"
) -> torch.Tensor:
    """float32 ``clamp(binary_conv2d(x, weight) * scale + bias + residual, lo, hi)`` as ``epilogue`` says
    (an :class:`AffineEpilogue` without ``bits_threshold``); the ``cpu`` backend computes it in the GEMM,
    rounding as these torch operations do. Other arguments as in :func:`binary_conv2d`."""
    if not isinstance(epilogue, AffineEpilogue) or epilogue.bits_threshold is not None:
        raise TypeError("binary_conv2d_affine takes an AffineEpilogue without bits_threshold (see *_affine_bits)")
    return _run(x, weight, stride, padding, dilation, None, backend, epilogue, None)


def binary_conv2d_affine_bits(
    x, weight, epilogue: AffineEpilogue, stride=1, padding=0, dilation=1, *, backend: str = "auto", out_padding=None
) -> tuple[torch.Tensor, PackedConv2dInput]:
    """(:func:`binary_conv2d_affine`'s float32 output ``y``, the signs of ``y - epilogue.bits_threshold``
    packed for the next binary convolution), from one pass. ``out_padding = (top, bottom, left, right)``:
    the bits come inside a zero border of that many pixels, the padded input of a next convolution with
    these pads (which then reads them without a copy)."""
    if not isinstance(epilogue, AffineEpilogue) or epilogue.bits_threshold is None:
        raise TypeError("binary_conv2d_affine_bits takes an AffineEpilogue with bits_threshold")
    return _run(x, weight, stride, padding, dilation, None, backend, epilogue, out_padding)


def binary_conv2d_bits(
    x, weight, epilogue: ThresholdEpilogue, stride=1, padding=0, dilation=1, *, backend: str = "auto", out_padding=None
) -> PackedConv2dInput:
    """The bits ``sgn[o] * binary_conv2d(x, weight) >= thr[o]`` (a :class:`ThresholdEpilogue`) packed along
    channels for the next binary convolution (``bnn_lab.export.graph``); ``out_padding`` as in
    :func:`binary_conv2d_affine_bits`."""
    if not isinstance(epilogue, ThresholdEpilogue):
        raise TypeError(f"binary_conv2d_bits takes a ThresholdEpilogue, got {type(epilogue).__name__}")
    return _run(x, weight, stride, padding, dilation, None, backend, epilogue, out_padding)

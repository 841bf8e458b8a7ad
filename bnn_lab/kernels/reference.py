"""Plain numpy references of what the binary kernels compute, written to be read, not to be fast.

Every backend (the numba GEMMs and passes, the Triton kernels, the torch path) is checked against
these in ``tests/kernels/test_numpy_reference.py``; none of them shares code with a backend.

- :func:`packed_matmul`: ``out[i, j] = K - 2 popcount(a[i] xor b[j])``, the +-1 dot product of two
  packed sign rows (``binary_matmul``).
- :func:`sign_conv2d`: ``conv2d(sign(x), sign(w))`` with zero padding, by its definition
  (``binary_conv2d``; sign(0) = +1).
- :func:`affine`: ``clamp(acc * scale + bias + residual, lo, hi)`` in float32, in that order
  (``binary_conv2d_affine``).
- :func:`threshold_bits`: ``sgn * acc >= thr`` per channel (``binary_conv2d_bits``).
- :func:`max_pool_clamp`: ``clamp(max over the window, lo, hi)``, taps outside the image skipped
  (``max_pool2d_clamp``).
- :func:`pack_channels`: bit ``c % 32`` of word ``c // 32`` of a pixel is ``x[c] >= 0``
  (``pack_conv2d_input``).
"""

from __future__ import annotations

import numpy as np


def signs(x: np.ndarray) -> np.ndarray:
    """+1 where ``x >= 0``, else -1, as int64."""
    return np.where(np.asarray(x) >= 0, 1, -1).astype(np.int64)


def packed_matmul(a_bits: np.ndarray, b_bits: np.ndarray, k: int) -> np.ndarray:
    """int64 (M, N) ``k - 2 popcount(a[i] xor b[j])`` of int32 (M, W) and (N, W) packed rows."""
    xor = a_bits.astype(np.uint32)[:, None, :] ^ b_bits.astype(np.uint32)[None, :, :]
    ones = np.unpackbits(xor.view(np.uint8), axis=-1).sum(axis=-1, dtype=np.int64)
    return k - 2 * ones


def sign_conv2d(x: np.ndarray, w: np.ndarray, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1)) -> np.ndarray:
    """int64 (N, O, Ho, Wo) ``conv2d(sign(x), sign(w))`` of (N, C, H, W) and (O, C, kh, kw); ``padding``
    = (top, bottom, left, right) zeros (neither sign)."""
    top, bottom, left, right = padding
    xs = np.pad(signs(x), ((0, 0), (0, 0), (top, bottom), (left, right)))
    ws = signs(w)
    (sh, sw), (dh, dw) = stride, dilation
    kh, kw = ws.shape[2:]
    ho = (xs.shape[2] - dh * (kh - 1) - 1) // sh + 1
    wo = (xs.shape[3] - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((xs.shape[0], ws.shape[0], ho, wo), dtype=np.int64)
    for i in range(ho):
        for j in range(wo):
            patch = xs[:, :, i * sh : i * sh + dh * (kh - 1) + 1 : dh, j * sw : j * sw + dw * (kw - 1) + 1 : dw]
            out[:, :, i, j] = np.einsum("nchw,ochw->no", patch, ws)
    return out


def fma32(a, b, c) -> np.ndarray:
    """float32 ``a * b + c`` rounded once, as a fused multiply-add instruction rounds it (broadcast).

    The product of two float32 values is exact in float64 (24 + 24 significant bits); the float64
    sum ``s`` is rounded at most once, and TwoSum gives its error ``e`` exactly. Rounding ``s`` to
    float32 gives the correctly rounded result except where ``s`` lies halfway between two float32
    values and ``e != 0``: then the exact sum is on the side of ``e``."""
    a, b, c = (np.asarray(v, dtype=np.float32).astype(np.float64) for v in (a, b, c))
    p = a * b
    s = p + c
    t = s - p
    e = (p - (s - t)) + (c - t)
    r = s.astype(np.float32)
    r64 = r.astype(np.float64)
    other = np.where(r64 < s, np.nextafter(r, np.float32(np.inf)), np.nextafter(r, np.float32(-np.inf)))
    o64 = other.astype(np.float64)
    halfway = (r64 != s) & ((r64 + o64) * 0.5 == s)
    return np.where(halfway & (e != 0) & ((o64 > s) == (e > 0)), other, r).astype(np.float32)


def affine(acc, scale=None, bias=None, residual=None, clamp=None) -> np.ndarray:
    """float32 ``clamp(acc * scale[o] + bias[o] + residual, lo, hi)`` of an (N, O, H, W) product."""
    y = np.asarray(acc, dtype=np.float32)
    per_channel = (1, -1, 1, 1)
    if scale is not None:
        y = y * np.asarray(scale, dtype=np.float32).reshape(per_channel)
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float32).reshape(per_channel)
    if residual is not None:
        y = y + np.asarray(residual, dtype=np.float32)
    if clamp is not None:
        y = np.clip(y, np.float32(clamp[0]), np.float32(clamp[1]))
    return y.astype(np.float32)


def threshold_bits(acc, sgn, thr) -> np.ndarray:
    """bool (N, O, H, W) ``sgn[o] * acc >= thr[o]``."""
    per_channel = (1, -1, 1, 1)
    return np.asarray(sgn).reshape(per_channel) * np.asarray(acc, dtype=np.int64) >= np.asarray(thr).reshape(
        per_channel
    )


def max_pool_clamp(x, kernel, stride, padding, clamp=None) -> np.ndarray:
    """float32 (N, C, Ho, Wo): the maximum over each window (taps outside the image skipped), clamped."""
    x = np.asarray(x, dtype=np.float32)
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    n, c, h, w = x.shape
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    out = np.full((n, c, ho, wo), -np.inf, dtype=np.float32)
    for i in range(ho):
        for j in range(wo):
            rows = slice(max(i * sh - ph, 0), min(i * sh - ph + kh, h))
            cols = slice(max(j * sw - pw, 0), min(j * sw - pw + kw, w))
            out[:, :, i, j] = x[:, :, rows, cols].max(axis=(2, 3))
    return out if clamp is None else np.clip(out, np.float32(clamp[0]), np.float32(clamp[1]))


def pack_channels(x) -> np.ndarray:
    """int32 (N, H, W, ceil(C / 32)): bit ``c % 32`` of word ``c // 32`` is ``x[n, c, h, w] >= 0``."""
    bits = np.asarray(x) >= 0
    n, c, h, w = bits.shape
    words = np.zeros((n, h, w, (c + 31) // 32), dtype=np.uint32)
    for ch in range(c):
        words[..., ch // 32] |= bits[:, ch].astype(np.uint32) << np.uint32(ch % 32)
    return words.view(np.int32)

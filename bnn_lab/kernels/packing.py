"""Bit-packing of signs into int32 words, and the inverse.

Encoding (shared by every kernel in :mod:`bnn_lab.kernels`):

* ``sign(x) = +1`` for ``x >= 0`` (this includes ``0.0`` and ``-0.0``) and ``-1``
  otherwise (NaN counts as ``-1``, like ``torch.where(x >= 0, 1, -1)``). It is never 0.
* ``+1`` is stored as bit 1, ``-1`` as bit 0.
* The last dimension (length ``K``) is packed into ``W = ceil(K / 32)`` int32 words,
  LSB first: bit ``j`` of word ``i`` holds element ``32 * i + j``. The word is stored
  as a (two's complement) ``torch.int32``, so a word whose bit 31 is set is negative.
* The ``32 * W - K`` padding bits of the last word are 0. Because *both* operands of a
  product are padded with 0 bits, ``XOR`` is 0 there and the padding adds nothing to
  the popcount, so ``a . w = K - 2 * popcount(bits(a) XOR bits(w))`` summed over all
  ``W`` words, with the true ``K`` (not ``32 * W``).
"""

from __future__ import annotations

import sys

import torch

WORD_BITS = 32

if sys.byteorder != "little":  # pragma: no cover - every platform torch supports is little-endian
    raise ImportError("bnn_lab.kernels assumes a little-endian machine")


def num_words(k: int) -> int:
    """Number of int32 words that hold ``k`` packed signs: ``ceil(k / 32)``."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    return (k + WORD_BITS - 1) // WORD_BITS


def sign(x: torch.Tensor) -> torch.Tensor:
    """Float ``+-1`` signs with the package convention (``sign(0) = sign(-0.0) = +1``)."""
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype if x.is_floating_point() else torch.float32)


_BYTE_WEIGHTS: dict[torch.device, torch.Tensor] = {}


def _byte_weights(device: torch.device) -> torch.Tensor:
    w = _BYTE_WEIGHTS.get(device)
    if w is None:
        w = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8, device=device)
        _BYTE_WEIGHTS[device] = w
    return w


def pack_signs(x: torch.Tensor) -> torch.Tensor:
    """Pack the signs of the last dimension of ``x`` into int32 words.

    Args:
        x: any real tensor ``[..., K]`` (CPU or CUDA). Only the sign is used.

    Returns:
        ``torch.int32`` tensor ``[..., ceil(K / 32)]`` on ``x``'s device: bit ``j`` of
        word ``i`` is 1 iff ``x[..., 32 * i + j] >= 0``; bits past ``K`` are 0.
    """
    if x.is_complex():
        raise TypeError("pack_signs needs a real tensor")
    if x.dim() == 0:
        x = x.reshape(1)
    k = x.shape[-1]
    w = num_words(k)
    lead = x.shape[:-1]
    bits = (x >= 0).to(torch.uint8)
    pad = w * WORD_BITS - k
    if pad:
        bits = torch.nn.functional.pad(bits, (0, pad))  # padding bits are 0
    # 8 consecutive signs -> one byte (LSB first); 4 little-endian bytes -> one int32 word.
    bits = bits.reshape(*lead, w * 4, 8)
    packed = (bits * _byte_weights(x.device)).sum(dim=-1, dtype=torch.uint8)
    return packed.view(torch.int32).reshape(*lead, w)


def unpack_signs(bits: torch.Tensor, k: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Inverse of :func:`pack_signs`: ``[..., W]`` int32 words -> ``[..., k]`` tensor of ``+-1``.

    Args:
        bits: int32 words as produced by :func:`pack_signs` (``W >= ceil(k / 32)``).
        k: number of signs to return (the true ``K``).
        dtype: result dtype (default float32).
    """
    if bits.dtype != torch.int32:
        raise TypeError(f"bits must be torch.int32, got {bits.dtype}")
    w = bits.shape[-1]
    if k > w * WORD_BITS:
        raise ValueError(f"k={k} does not fit in {w} words of 32 bits")
    shifts = torch.arange(WORD_BITS, dtype=torch.int32, device=bits.device)
    b = (bits.unsqueeze(-1) >> shifts) & 1  # arithmetic shift, but '& 1' keeps bit j only
    b = b.reshape(*bits.shape[:-1], w * WORD_BITS)[..., :k]
    return (b * 2 - 1).to(dtype)

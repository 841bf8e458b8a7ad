"""Reference backend in plain torch: XOR + SWAR popcount on int32 words, any device."""

from __future__ import annotations

import torch

# Elements of the (rows, N, W) XOR temporary materialised at once (int32: 4 bytes each).
_CHUNK_ELEMENTS = 1 << 23


def popcount32(x: torch.Tensor) -> torch.Tensor:
    """Per-element popcount of an int32 tensor (SWAR bit tricks, result int32 in [0, 32]).

    ``>>`` is an arithmetic shift on int32, but every shifted value is masked with a
    constant whose bit 31 is 0 (and the last step keeps only the top byte of a product
    that is at most 32), so the sign bit never leaks into the count.
    """
    x = x - ((x >> 1) & 0x55555555)
    x = (x & 0x33333333) + ((x >> 2) & 0x33333333)
    x = (x + (x >> 4)) & 0x0F0F0F0F
    return (x * 0x01010101) >> 24  # int32 multiply wraps; top byte = count


def binary_matmul_torch(a_bits: torch.Tensor, b_bits: torch.Tensor, k: int) -> torch.Tensor:
    """``out[i, j] = k - 2 * sum_w popcount(a[i, w] ^ b[j, w])`` (int32, chunked over rows)."""
    m, w = a_bits.shape
    n = b_bits.shape[0]
    out = torch.empty((m, n), dtype=torch.int32, device=a_bits.device)
    if m == 0 or n == 0:
        return out
    rows = max(1, _CHUNK_ELEMENTS // max(1, n * w))
    for i0 in range(0, m, rows):
        x = a_bits[i0 : i0 + rows, None, :] ^ b_bits[None, :, :]
        count = popcount32(x).sum(dim=-1, dtype=torch.int32)
        out[i0 : i0 + rows] = k - 2 * count
    return out

"""``triton`` backend: two Triton kernels, picked by shape.

* ``M <= POPCOUNT_MAX_M`` (small batches: bandwidth-bound, the 1-bit B matrix is
  streamed once): :func:`_popcount_kernel`, XOR + a SWAR popcount written in triton
  ops (``libdevice.popc`` is not available under the interpreter).
* larger ``M``: :func:`_dot_kernel` unpacks 32-bit words to int8 ``+-1`` tiles in
  registers and multiplies them with ``tl.dot`` (int8 x int8 -> int32 accumulate,
  tensor cores on GPU). Padding bits (0 in both operands) unpack to ``-1 * -1 = +1``,
  so the kernel subtracts the number of padded bit positions it processed.

CPU tensors run under the Triton interpreter, which needs ``TRITON_INTERPRET=1`` in
the environment *before triton is first imported* (triton decorates its own ``tl``
library at import time). Without it, CPU tensors raise a ``RuntimeError`` saying so;
the tests run the interpreter checks in a subprocess that sets the variable. The int8 ``tl.dot`` works under the
interpreter (it computes it with numpy), so both kernels are tested there.

The GPU block sizes come from a sweep on an H100 (every config checked exact, timed with
``triton.testing.do_bench``; figures in docs/performance.md): the popcount kernel beats a
bfloat16 cuBLAS product for M <= 16 (3.0x at M=1, 2.3x at M=16 for N=K=4096), the int8
kernel reaches 0.3-0.5x of it for large M.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

#: ``binary_matmul`` uses the popcount kernel up to this many rows of A.
POPCOUNT_MAX_M = 16


def _popcount_kernel(
    a_ptr, b_ptr, c_ptr, M, N, W, K,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_W: tl.constexpr,
):  # fmt: skip
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rw = tl.arange(0, BLOCK_W)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
    for w0 in range(0, W, BLOCK_W):
        ww = w0 + rw
        a = tl.load(a_ptr + rm[:, None] * W + ww[None, :], mask=(rm[:, None] < M) & (ww[None, :] < W), other=0)
        b = tl.load(b_ptr + rn[:, None] * W + ww[None, :], mask=(rn[:, None] < N) & (ww[None, :] < W), other=0)
        x = (a[:, None, :] ^ b[None, :, :]).to(tl.uint32, bitcast=True)
        # SWAR popcount on uint32 (logical shifts).
        x = x - ((x >> 1) & 0x55555555)
        x = (x & 0x33333333) + ((x >> 2) & 0x33333333)
        x = (x + (x >> 4)) & 0x0F0F0F0F
        x = (x * 0x01010101) >> 24
        acc += tl.sum(x.to(tl.int32), axis=2)
    out = K - 2 * acc
    tl.store(c_ptr + rm[:, None] * N + rn[None, :], out, mask=(rm[:, None] < M) & (rn[None, :] < N))


def _dot_kernel(
    a_ptr, b_ptr, c_ptr, M, N, W, K,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_W: tl.constexpr,
):  # fmt: skip
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rw = tl.arange(0, BLOCK_W)
    shifts = tl.arange(0, 32)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
    for w0 in range(0, W, BLOCK_W):
        ww = w0 + rw
        a = tl.load(a_ptr + rm[:, None] * W + ww[None, :], mask=(rm[:, None] < M) & (ww[None, :] < W), other=0)
        b = tl.load(b_ptr + rn[:, None] * W + ww[None, :], mask=(rn[:, None] < N) & (ww[None, :] < W), other=0)
        # bit j of word q -> element 32 q + j, as +1 (bit 1) / -1 (bit 0), int8.
        a8 = (((a[:, :, None] >> shifts[None, None, :]) & 1) * 2 - 1).to(tl.int8)
        b8 = (((b[:, :, None] >> shifts[None, None, :]) & 1) * 2 - 1).to(tl.int8)
        a8 = tl.reshape(a8, (BLOCK_M, BLOCK_W * 32))
        b8 = tl.reshape(b8, (BLOCK_N, BLOCK_W * 32))
        acc = tl.dot(a8, tl.trans(b8), acc, out_dtype=tl.int32)
    # Every processed bit position past K (zero bits in both rows, or masked-out words)
    # contributed (-1) * (-1) = +1.
    processed = tl.cdiv(W, BLOCK_W) * BLOCK_W * 32
    out = acc - (processed - K)
    tl.store(c_ptr + rm[:, None] * N + rn[None, :], out, mask=(rm[:, None] < M) & (rn[None, :] < N))


def interpreter_mode() -> bool:
    """Whether triton was imported for its interpreter (``TRITON_INTERPRET=1`` was set
    before the first ``import triton``). Triton decorates its own ``tl`` library
    functions at import time, so this is fixed for the life of the process."""
    return type(tl.zeros).__name__ == "InterpretedFunction"


def _decorate(fn):
    if interpreter_mode():
        from triton.runtime.interpreter import InterpretedFunction

        return InterpretedFunction(fn)
    from triton.runtime.jit import JITFunction

    return JITFunction(fn)


popcount_kernel = _decorate(_popcount_kernel)
dot_kernel = _decorate(_dot_kernel)


def _check_device(t: torch.Tensor) -> bool:
    """True when the kernels run under the interpreter (CPU tensors need it)."""
    interpret = interpreter_mode()
    if t.device.type == "cpu" and not interpret:
        hint = (
            "TRITON_INTERPRET=1 is set but triton had already been imported without it"
            if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
            else "TRITON_INTERPRET is not set"
        )
        raise RuntimeError(
            "the 'triton' backend got CPU tensors, which Triton runs only under its interpreter "
            f"({hint}). Set the environment variable TRITON_INTERPRET=1 before triton is first imported "
            "(e.g. `TRITON_INTERPRET=1 python ...`), or use backend='cpu', 'torch' or 'auto' for CPU tensors."
        )
    if t.device.type not in ("cpu", "cuda"):
        raise ValueError(f"the 'triton' backend needs CUDA (or interpreted CPU) tensors, got {t.device}")
    return interpret


def _next_pow2(x: int) -> int:
    return 1 << max(0, (x - 1).bit_length())


def _launch(kernel_index: int, a_bits: torch.Tensor, b_bits: torch.Tensor, k: int, blocks, num_warps=None):
    interpret = _check_device(a_bits)
    kernel = (popcount_kernel, dot_kernel)[kernel_index]
    m, w = a_bits.shape
    n = b_bits.shape[0]
    out = torch.empty((m, n), dtype=torch.int32, device=a_bits.device)
    if m == 0 or n == 0:
        return out
    bm, bn, bw = blocks
    grid = (triton.cdiv(m, bm), triton.cdiv(n, bn))
    extra = {} if interpret or num_warps is None else {"num_warps": num_warps}
    kernel[grid](a_bits, b_bits, out, m, n, w, k, BLOCK_M=bm, BLOCK_N=bn, BLOCK_W=bw, **extra)
    return out


def binary_matmul_triton_popcount(a_bits: torch.Tensor, b_bits: torch.Tensor, k: int) -> torch.Tensor:
    """The popcount kernel, whatever the shape (int32 (M, N))."""
    m, w = a_bits.shape
    if _check_device(a_bits):
        blocks = (min(8, _next_pow2(m)), 16, min(8, _next_pow2(max(w, 1))))
    else:  # H100 sweep: 32 columns x 32 words (1024 bits of K) per step, 4 warps
        blocks = (min(8, _next_pow2(m)), 32, min(32, _next_pow2(max(w, 1))))
    return _launch(0, a_bits, b_bits, k, blocks, num_warps=4)


def binary_matmul_triton_dot(a_bits: torch.Tensor, b_bits: torch.Tensor, k: int) -> torch.Tensor:
    """The unpack + int8 ``tl.dot`` kernel, whatever the shape (int32 (M, N))."""
    if _check_device(a_bits):
        blocks = (16, 16, 1)  # interpreter: small tiles keep the numpy temporaries small
    else:
        blocks = (128, 128, 4)  # 128 x 128 output tile, K step of 128 bits (H100 sweep)
    return _launch(1, a_bits, b_bits, k, blocks, num_warps=8)


def binary_matmul_triton(a_bits: torch.Tensor, b_bits: torch.Tensor, k: int) -> torch.Tensor:
    """Popcount kernel for ``M <= POPCOUNT_MAX_M``, int8 tensor-core kernel otherwise."""
    if a_bits.shape[0] <= POPCOUNT_MAX_M:
        return binary_matmul_triton_popcount(a_bits, b_bits, k)
    return binary_matmul_triton_dot(a_bits, b_bits, k)

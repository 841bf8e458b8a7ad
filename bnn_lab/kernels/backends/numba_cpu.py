"""``cpu`` backend: compiled numba kernels (see ``_numba_kernels.py``), CPU tensors only.

numba is optional: this module imports without it and raises a clear error when used.
The kernels run with ``min(torch.get_num_threads(), NUMBA_NUM_THREADS)`` threads so
that they follow the same thread setting as torch, on the threading layer that
:mod:`bnn_lab.kernels.thread_pools` chooses.
"""

from __future__ import annotations

import importlib.util
import threading

import numpy as np
import torch

from .. import thread_pools

HAS_NUMBA = importlib.util.find_spec("numba") is not None

_NO_INDEX = np.zeros(0, dtype=np.int32)
_NO_ROWS = np.zeros((0, 0), dtype=np.int32)
_NO_FLOATS = np.zeros((0, 0), dtype=np.float32)
_NO_WORDS = np.zeros((0, 0), dtype=np.uint32)
_NO_THRESHOLDS = np.zeros(0, dtype=np.float32)
_NO_ROW_MAP = np.zeros(0, dtype=np.int64)
_loaded = None  # the kernels module, imported on first use
_synced = threading.local()  # per calling thread: the torch thread count numba was last set to


def _kernels():
    global _loaded
    if _loaded is None:
        if not HAS_NUMBA:
            raise RuntimeError("the 'cpu' binary_matmul backend needs numba (pip install numba); use backend='torch'")
        thread_pools.configure()  # numba's threading layer, before its threads start
        from . import _numba_kernels

        _loaded = _numba_kernels
    return _loaded


def _sync_threads() -> int:
    """Use as many numba threads as torch does (or as ``thread_pools.float_ops_on_caller`` kept for the
    kernels); returns that number.

    With numba's ``omp`` threading layer, starting numba's threads calls
    ``omp_set_num_threads(NUMBA_NUM_THREADS)`` in the OpenMP runtime that torch shares,
    which silently changes ``torch.get_num_threads()``: it is restored here. numba's
    setting is per calling thread, so the last synced count is remembered per thread and
    numba is only called again when torch's count changed.
    """
    torch_threads = torch.get_num_threads()
    wanted = thread_pools.kernel_threads() or torch_threads
    if getattr(_synced, "wanted", None) == wanted and getattr(_synced, "torch_threads", None) == torch_threads:
        return _synced.numba_threads
    import numba

    n = max(1, min(wanted, numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(n)
    if torch.get_num_threads() != torch_threads:
        torch.set_num_threads(torch_threads)
    _synced.torch_threads, _synced.wanted, _synced.numba_threads = torch_threads, wanted, n
    return n


def _require_cpu(*tensors: torch.Tensor) -> None:
    for t in tensors:
        if t.device.type != "cpu":
            raise ValueError(f"the 'cpu' backend needs CPU tensors, got a tensor on {t.device}")


def words64(w32: int) -> int:
    """uint64 words per row for rows of ``w32`` int32 words (an odd count gets a zero word)."""
    return (w32 + 1) // 2


def as_u64_rows(t: torch.Tensor, w64: int) -> np.ndarray:
    """(rows, w32) int32 tensor -> C-contiguous (rows, w64) uint64 array (zero-padded).

    No copy when the tensor already has ``2 * w64`` contiguous, 8-byte aligned words per row.
    """
    arr = t.detach().numpy()
    rows, w32 = arr.shape
    if w32 == 2 * w64 and arr.flags.c_contiguous and arr.ctypes.data % 8 == 0:
        return arr.view(np.uint64)
    buf = np.zeros((rows, 2 * w64), dtype=np.int32)
    buf[:, :w32] = arr
    return buf.view(np.uint64)


def to_panels(b64: np.ndarray) -> np.ndarray:
    """B rows (N, W) uint64 -> panels (ceil(N / 8), W, 8): ``bp[p, w, l] = b[8 p + l, w]``."""
    kern = _kernels()
    n, w = b64.shape
    bp = np.empty(((n + kern.LANES - 1) // kern.LANES, w, kern.LANES), dtype=np.uint64)
    _sync_threads()
    kern.to_panels_kernel()(b64, bp)
    return bp


def compact_correction(corr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(P, N) correction -> (index (P,) int32, rows (B, N) int32) keeping only the B
    non-zero rows (the border pixels of a convolution); index -1 for the others."""
    nonzero = np.flatnonzero(np.any(corr != 0, axis=1))
    index = np.full(corr.shape[0], -1, dtype=np.int32)
    index[nonzero] = np.arange(nonzero.size, dtype=np.int32)
    return index, np.ascontiguousarray(corr[nonzero], dtype=np.int32)


def gemm_into(src: np.ndarray, offs: np.ndarray, bp: np.ndarray, geo, k: int, out: np.ndarray, period=1, corr=None):
    """``out[i, j] = k - 2 popcount(A[i] ^ B[j]) (+ correction of pixel i % period)``.

    Row ``i`` of A is read from the flat uint64 array ``src`` as segments
    (``geo = (n_i, n_j, seg_len, stride_i, stride_j)``, see ``_numba_kernels._make_tile``)
    starting at ``offs[i]``; B is given as panels (:func:`to_panels`); ``out`` is a
    C-contiguous (M, N) int32 array; ``corr`` is ``None`` or a pair from
    :func:`compact_correction`.
    """
    kern = _kernels()
    n_threads = _sync_threads()
    if offs.shape[0] == 0 or out.shape[1] == 0:
        return
    n_i, n_j, seg_len, stride_i, stride_j = (int(v) for v in geo)
    index, rows = (_NO_INDEX, _NO_ROWS) if corr is None else corr
    kern.gemm_kernel()(
        src, offs, bp, n_i, n_j, seg_len, stride_i, stride_j, int(k), out, int(period), index, rows, n_threads
    )


def gemm_affine_into(
    src,
    offs,
    bp,
    geo,
    k: int,
    out: np.ndarray,
    scale: np.ndarray,
    bias: np.ndarray,
    period=1,
    corr=None,
    res: np.ndarray | None = None,
    lo: float = -np.inf,
    hi: float = np.inf,
    bits: np.ndarray | None = None,
    bits_threshold: np.ndarray | None = None,
    bit_rows: np.ndarray | None = None,
    fused: bool = False,
):
    """:func:`gemm_into` with the output in float32: ``out[i, j] = clamp(acc[i, j] * scale[j] + bias[j]
    (+ res[i, j]), lo, hi)`` (``scale``, ``bias`` float32 (N,); ``res`` float32 (M, N) or None),
    rounded as the same torch operations (``fused``: ``acc * scale + bias`` rounded once, as torch's
    CPU BatchNorm); with ``bits`` (uint32 (M, words), zero-filled) also the
    bits ``out[i, j] >= bits_threshold[j]`` packed along j, in row ``bit_rows[i]`` of ``bits`` (int64
    (M,); None: row i)."""
    kern = _kernels()
    n_threads = _sync_threads()
    if offs.shape[0] == 0 or out.shape[1] == 0:
        return
    index, rows = (_NO_INDEX, _NO_ROWS) if corr is None else corr
    n_i, n_j, seg_len, stride_i, stride_j = geo
    kern.gemm_affine_kernel()(
        src,
        offs,
        bp,
        n_i,
        n_j,
        seg_len,
        stride_i,
        stride_j,
        k,
        out,
        period,
        index,
        rows,
        scale,
        bias,
        _NO_FLOATS if res is None else res,
        np.float32(lo),
        np.float32(hi),
        np.int64(bool(fused)),
        _NO_WORDS if bits is None else bits,
        _NO_THRESHOLDS if bits_threshold is None else bits_threshold,
        _NO_ROW_MAP if bit_rows is None else bit_rows,
        n_threads,
    )


def gemm_bits_into(
    src,
    offs,
    bp,
    geo,
    k: int,
    out: np.ndarray,
    sgn: np.ndarray,
    thr: np.ndarray,
    period=1,
    corr=None,
    bit_rows: np.ndarray | None = None,
):
    """:func:`gemm_into` with the output packed: bit ``j % 32`` of uint32 word ``out[r, j // 32]`` is
    ``acc[i, j] * sgn[j] >= thr[j]`` (int32 (N,) each), ``r = bit_rows[i]`` (int64 (M,); None: ``r = i``);
    ``out`` zero-filled, at least ceil(N / 32) words."""
    kern = _kernels()
    n_threads = _sync_threads()
    if offs.shape[0] == 0 or sgn.shape[0] == 0:
        return
    index, rows = (_NO_INDEX, _NO_ROWS) if corr is None else corr
    n_i, n_j, seg_len, stride_i, stride_j = geo
    kern.gemm_bits_kernel()(
        src,
        offs,
        bp,
        n_i,
        n_j,
        seg_len,
        stride_i,
        stride_j,
        k,
        out,
        period,
        index,
        rows,
        sgn,
        thr,
        _NO_ROW_MAP if bit_rows is None else bit_rows,
        n_threads,
    )


def max_pool_clamp_into(
    x: np.ndarray,
    n: int,
    hw,
    kernel,
    stride,
    padding,
    out_hw,
    lo: float,
    hi: float,
    y: np.ndarray,
    bits: np.ndarray | None = None,
    threshold: np.ndarray | None = None,
    bit_rows: np.ndarray | None = None,
) -> None:
    """``y = clamp(max_pool2d(x), lo, hi)`` on channels-last rows: ``x`` float32 (N * H * W, C), ``y``
    float32 (N * Ho * Wo, C) (``hw``, ``kernel``, ``stride``, ``padding``, ``out_hw``: pairs); with
    ``bits`` (uint32, zero-filled) also the bits ``y >= threshold[c]`` packed along the channels, pixel
    ``i`` in row ``bit_rows[i]`` (None: row i)."""
    kern = _kernels()
    _sync_threads()
    if y.shape[0] == 0 or y.shape[1] == 0:
        return
    kern.max_pool_clamp_kernel()(
        x,
        n,
        hw[0],
        hw[1],
        kernel[0],
        kernel[1],
        stride[0],
        stride[1],
        padding[0],
        padding[1],
        out_hw[0],
        out_hw[1],
        np.float32(lo),
        np.float32(hi),
        y,
        _NO_WORDS if bits is None else bits,
        _NO_THRESHOLDS if threshold is None else threshold,
        _NO_ROW_MAP if bit_rows is None else bit_rows,
    )


def binary_matmul_cpu(a_bits: torch.Tensor, b_bits: torch.Tensor, k: int) -> torch.Tensor:
    """``k - 2 * popcount(a XOR b)`` for all row pairs; int32 (M, N) on CPU.

    B is re-laid out into panels on every call (O(N * W), a few percent of the work);
    :func:`~bnn_lab.kernels.binary_conv2d` caches the panels of its weights instead.
    """
    _require_cpu(a_bits, b_bits)
    _kernels()
    m, n = a_bits.shape[0], b_bits.shape[0]
    w64 = words64(a_bits.shape[1])
    out = torch.empty((m, n), dtype=torch.int32)
    if m == 0 or n == 0:
        return out
    bp = to_panels(as_u64_rows(b_bits, w64))
    offs = np.arange(m, dtype=np.int64) * w64
    gemm_into(as_u64_rows(a_bits, w64).reshape(-1), offs, bp, (1, 1, w64, 0, 0), k, out.numpy())
    return out


def pack_channels(x: torch.Tensor, pads: tuple[int, int, int, int], words: int) -> torch.Tensor:
    """Signs of ``x`` (N, C, H, W) packed along channels, padded with -1 (zero bits).

    ``pads = (top, bottom, left, right)``; ``words >= ceil(C / 32)`` int32 words per
    pixel (the extra ones stay zero). Returns int32 (N, H + top + bottom,
    W + left + right, words).
    """
    kern = _kernels()
    _require_cpu(x)
    n, c, h, w = x.shape
    top, bottom, left, right = pads
    xb = torch.zeros((n, h + top + bottom, w + left + right, words), dtype=torch.int32)
    if x.dtype not in (torch.float32, torch.float64):
        # Exact sign for every other dtype (float16/bfloat16/ints): compare in torch first.
        x = torch.where(x >= 0, 1, -1).to(torch.int8)
    if xb.numel() and c:
        _sync_threads()
        if x.dim() == 4 and x.permute(0, 2, 3, 1).is_contiguous():  # channels_last: read it as it lies
            pixels = x.detach().permute(0, 2, 3, 1).reshape(n * h * w, c).numpy()
            full = c // 32 if pixels.dtype == np.float32 and pixels.flags.c_contiguous else 0
            kern.pack_pixels_kernel()(pixels, xb.numpy().view(np.uint32), top, left, h, w, full)
        else:
            arr = x.detach().contiguous().reshape(n, c, h * w).numpy()
            kern.pack_channels_kernel()(arr, xb.numpy().view(np.uint32), top, left, w)
    return xb


def conv_row_offsets(n_img: int, padded_hw, pixel_words: int, stride, out_hw) -> np.ndarray:
    """uint64-word offset, in the flat padded packed input, of the top-left tap of each
    output pixel ``(n, oh, ow)`` (row-major): one int64 per GEMM row (kept in the
    convolution's plan, ``bnn_lab.kernels.conv``)."""
    hp, wp = padded_hw
    n = np.arange(n_img, dtype=np.int64)[:, None, None]
    oh = np.arange(out_hw[0], dtype=np.int64)[None, :, None] * stride[0]
    ow = np.arange(out_hw[1], dtype=np.int64)[None, None, :] * stride[1]
    return np.ascontiguousarray((((n * hp + oh) * wp + ow) * pixel_words).reshape(-1))

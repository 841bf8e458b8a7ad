"""numba kernels of the ``cpu`` backend (imported only when that backend is used).

Every kernel is compiled on first use (``njit(parallel=True, fastmath=True,
cache=True)``; the machine code is cached in ``__pycache__``) by the getters at the
bottom of this file.

GEMM. Rows are ``uint64`` words (two int32 words each; same bit order because the
machine is little-endian). B is re-laid out in *panels* of 8 rows, word-major
(``bp[p, w, l] = b[8 p + l, w]``), so that one 8-lane vector holds word ``w`` of 8
different B rows. The micro-kernel is an outer product: for each word ``w`` it
broadcasts ``a[i, w]`` for 4 rows of A, XORs it with 4 panel vectors (32 columns) and
adds the per-lane popcounts into 16 vector accumulators that stay in registers for
the whole row, so there is no horizontal reduction per output (which costs as much
as the popcounts themselves for K ~ 2000). LLVM's loop vectoriser does not find this
schedule from scalar code, so the tile is written as LLVM IR (a numba
``@intrinsic``) on ``<8 x i64>`` vectors. The popcount is the SWAR expression
(``x - (x >> 1 & 0x55..)`` ...), which LLVM recognises and turns into ``vpopcntq``
with AVX512-VPOPCNTDQ (or expands on older CPUs). Measured on a 2-core AMD EPYC
(docs/performance.md): about 2x faster than a 4x4 register tile that reduces along
K, on the ResNet conv shape (M=1568, N=256, K=2304).
"""

from __future__ import annotations

import functools

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

LANES = 8  # uint64 lanes per vector (one AVX-512 register)
TILE_ROWS = 4  # rows of A per micro-kernel call
TILE_PANELS = 4  # panels (of 8 B rows) per micro-kernel call -> 32 columns

_I64 = ir.IntType(64)
_VEC = ir.VectorType(_I64, LANES)


def _splat(c: int) -> ir.Constant:
    return ir.Constant(_VEC, [c] * LANES)


def _swar_popcount(b: ir.IRBuilder, x):
    """Per-lane popcount of an ``<8 x i64>`` (the SWAR idiom; LLVM emits vpopcntq)."""
    x = b.sub(x, b.and_(b.lshr(x, _splat(1)), _splat(0x5555555555555555)))
    x = b.add(b.and_(x, _splat(0x3333333333333333)), b.and_(b.lshr(x, _splat(2)), _splat(0x3333333333333333)))
    x = b.and_(b.add(x, b.lshr(x, _splat(4))), _splat(0x0F0F0F0F0F0F0F0F))
    return b.lshr(b.mul(x, _splat(0x0101010101010101)), _splat(56))


def _make_tile(rows: int, panels: int):
    """Intrinsic ``tile(a, bp, i0, p0, buf)``: for r < rows, c < 8 * panels,
    ``buf[r, c] = sum_w popcount(a[i0 + r, w] ^ bp[p0 + c // 8, w, c % 8])``.

    ``a`` (M, W) and ``bp`` (P, W, 8) must be C-contiguous uint64 (the callers'
    signatures enforce it); ``buf`` is a C-contiguous uint64 array of at least
    ``rows * 8 * panels`` elements, row stride ``8 * TILE_PANELS``.
    """

    @intrinsic
    def tile(typingctx, a, bp, i0, p0, buf):
        sig = types.void(a, bp, i0, p0, buf)

        def codegen(context, builder, signature, args):
            a_ty, bp_ty, i0_ty, p0_ty, buf_ty = signature.args
            arr_a = context.make_array(a_ty)(context, builder, args[0])
            arr_b = context.make_array(bp_ty)(context, builder, args[1])
            arr_o = context.make_array(buf_ty)(context, builder, args[4])
            i0_v = context.cast(builder, args[2], i0_ty, types.int64)
            p0_v = context.cast(builder, args[3], p0_ty, types.int64)
            n_words = builder.extract_value(arr_a.shape, 1)
            panel_stride = builder.mul(n_words, ir.Constant(_I64, LANES))
            b_rows = [
                builder.gep(arr_b.data, [builder.mul(builder.add(p0_v, ir.Constant(_I64, c)), panel_stride)])
                for c in range(panels)
            ]
            a_rows = [
                builder.gep(arr_a.data, [builder.mul(builder.add(i0_v, ir.Constant(_I64, r)), n_words)])
                for r in range(rows)
            ]
            acc = [[cgutils.alloca_once_value(builder, _splat(0)) for _ in range(panels)] for _ in range(rows)]
            undef = ir.Constant(_VEC, ir.Undefined)
            zero_mask = ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES)
            with cgutils.for_range(builder, n_words) as loop:
                w = loop.index
                off = builder.mul(w, ir.Constant(_I64, LANES))
                bv = [
                    builder.load(builder.bitcast(builder.gep(b_rows[c], [off]), _VEC.as_pointer()), align=8)
                    for c in range(panels)
                ]
                for r in range(rows):
                    a_word = builder.load(builder.gep(a_rows[r], [w]))
                    a_vec = builder.insert_element(undef, a_word, ir.Constant(ir.IntType(32), 0))
                    a_vec = builder.shuffle_vector(a_vec, undef, zero_mask)  # broadcast
                    for c in range(panels):
                        count = _swar_popcount(builder, builder.xor(a_vec, bv[c]))
                        builder.store(builder.add(builder.load(acc[r][c]), count), acc[r][c])
            for r in range(rows):
                for c in range(panels):
                    ptr = builder.gep(arr_o.data, [ir.Constant(_I64, r * LANES * TILE_PANELS + c * LANES)])
                    builder.store(builder.load(acc[r][c]), builder.bitcast(ptr, _VEC.as_pointer()), align=8)
            return context.get_dummy_value()

        return sig, codegen

    return tile


_tile_full = _make_tile(TILE_ROWS, TILE_PANELS)
_tile_row = _make_tile(1, TILE_PANELS)
_tile_panel = _make_tile(TILE_ROWS, 1)
_tile_one = _make_tile(1, 1)


@njit(inline="always", cache=True)
def _block(a, bp, k, out, period, corr, i0, p0, buf):
    """Compute and store the outputs of rows [i0, i0 + 4) x panels [p0, p0 + 4)."""
    m = a.shape[0]
    nrows = min(TILE_ROWS, m - i0)
    npan = min(TILE_PANELS, bp.shape[0] - p0)
    if nrows == TILE_ROWS and npan == TILE_PANELS:
        _tile_full(a, bp, i0, p0, buf)
    elif nrows == TILE_ROWS:
        for c in range(npan):
            _tile_panel(a, bp, i0, p0 + c, buf[:, c * LANES :])
    elif npan == TILE_PANELS:
        for r in range(nrows):
            _tile_row(a, bp, i0 + r, p0, buf[r:, :])
    else:
        for r in range(nrows):
            for c in range(npan):
                _tile_one(a, bp, i0 + r, p0 + c, buf[r:, c * LANES :])
    j0 = p0 * LANES
    ncols = min(npan * LANES, out.shape[1] - j0)
    for r in range(nrows):
        i = i0 + r
        row = out[i]
        if corr.shape[0] > 0:
            crow = corr[i % period]
            for c in range(ncols):
                row[j0 + c] = k - 2 * np.int64(buf[r, c]) + crow[j0 + c]
        else:
            for c in range(ncols):
                row[j0 + c] = k - 2 * np.int64(buf[r, c])


def _gemm(a, bp, k, out, period, corr, n_threads):
    """``out[i, j] = k - 2 * popcount(a[i] ^ b[j]) (+ corr[i % P, j])``.

    ``a``: (M, W) uint64; ``bp``: B in panels (ceil(N / 8), W, 8) (see
    :func:`_to_panels`); ``out``: (M, N) int32. ``corr`` is a (P, N) int32 array added
    to the rows with period ``P`` (the border correction of a convolution, whose rows
    are the N_img * H_out * W_out output pixels and P = H_out * W_out), or a (0, 0)
    array. ``n_threads`` (numba's thread count; passed in because calling
    ``numba.get_num_threads()`` here would make the function uncacheable) picks the
    parallel split. The epilogue writes contiguous runs of a row (vectorised).
    """
    m = a.shape[0]
    row_blocks = (m + TILE_ROWS - 1) // TILE_ROWS
    col_blocks = (bp.shape[0] + TILE_PANELS - 1) // TILE_PANELS
    if row_blocks >= 2 * n_threads or row_blocks >= col_blocks:
        for ib in prange(row_blocks):  # each thread streams all of B (it stays in L2)
            buf = np.empty((TILE_ROWS, TILE_PANELS * LANES), np.uint64)
            for jb in range(col_blocks):
                _block(a, bp, k, out, period, corr, ib * TILE_ROWS, jb * TILE_PANELS, buf)
    else:  # few rows (small batch): split the columns between threads instead
        for jb in prange(col_blocks):
            buf = np.empty((TILE_ROWS, TILE_PANELS * LANES), np.uint64)
            for ib in range(row_blocks):
                _block(a, bp, k, out, period, corr, ib * TILE_ROWS, jb * TILE_PANELS, buf)


_GEMM_SIG = "void(uint64[:, ::1], uint64[:, :, ::1], int64, int32[:, ::1], int64, int32[:, ::1], int64)"


def _to_panels(b, bp):
    """``bp[p, w, l] = b[8 p + l, w]`` (rows past N are zero); ``bp`` is preallocated."""
    n, w = b.shape
    for p in prange(bp.shape[0]):
        for lane in range(LANES):
            j = p * LANES + lane
            if j < n:
                for q in range(w):
                    bp[p, q, lane] = b[j, q]
            else:
                for q in range(w):
                    bp[p, q, lane] = 0


def _pack_channels(x, xb, pad_top, pad_left, w):
    """Signs of ``x`` (N, C, H * W) (images of width ``w``) packed along channels into ``xb`` (N, Hp, Wp, CW).

    ``xb`` is uint32 and zero-filled by the caller; the image lands at offset
    (``pad_top``, ``pad_left``), so the border stays all-zero bits, i.e. -1 values.
    Bit ``b`` of word ``cw`` at a pixel is channel ``32 * cw + b`` (LSB first).
    One task per (image, word): the inner loop runs over a whole contiguous channel
    plane, so it vectorises.
    """
    n_img, c, hw = x.shape
    cw_n = xb.shape[3]
    for t in prange(n_img * cw_n):
        ni = t // cw_n
        cw = t - ni * cw_n
        acc = np.zeros(hw, np.uint32)
        c0 = cw * 32
        c1 = min(c, c0 + 32)
        for ci in range(c0, c1):
            bit = np.uint32(1 << (ci - c0))
            for s in range(hw):
                if x[ni, ci, s] >= 0:
                    acc[s] |= bit
        for s in range(hw):
            hi = s // w
            xb[ni, pad_top + hi, pad_left + s - hi * w, cw] = acc[s]


def _im2col(xb, cols, kh, kw, sh, sw, dh, dw, h_out, w_out):
    """Gather packed patches: row ``r = (n, oh, ow)`` of ``cols`` is the concatenation
    over taps ``(i, j)`` of the ``CW`` channel words of pixel ``(oh*sh + i*dh, ow*sw + j*dw)``
    of the padded packed input ``xb``; the rest of the row is zero words. With
    ``dw == 1`` the taps of one kernel row are ``kw * CW`` contiguous words of ``xb``,
    copied as one run."""
    n_img, hp, wp, cw_n = xb.shape
    rows, width = cols.shape
    src = xb.reshape(-1)
    per_img = h_out * w_out
    run = kw * cw_n if dw == 1 else cw_n
    runs_per_row = kh if dw == 1 else kh * kw
    for r in prange(rows):
        ni = r // per_img
        p = r - ni * per_img
        oh = p // w_out
        ow = p - oh * w_out
        dst = cols[r]
        for t in range(runs_per_row):
            if dw == 1:
                i = t
                j = 0
            else:
                i = t // kw
                j = t - i * kw
            start = ((ni * hp + oh * sh + i * dh) * wp + ow * sw + j * dw) * cw_n
            for q in range(run):
                dst[t * run + q] = src[start + q]
        for q in range(runs_per_row * run, width):
            dst[q] = 0


_OPTS = dict(parallel=True, fastmath=True, cache=True)


@functools.cache
def gemm_kernel():
    return njit(_GEMM_SIG, **_OPTS)(_gemm)


@functools.cache
def to_panels_kernel():
    return njit("void(uint64[:, ::1], uint64[:, :, ::1])", **_OPTS)(_to_panels)


@functools.cache
def pack_channels_kernel():
    return njit(**_OPTS)(_pack_channels)


@functools.cache
def im2col_kernel():
    return njit(**_OPTS)(_im2col)

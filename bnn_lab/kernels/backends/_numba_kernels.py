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

Epilogues. A whole tile (``TILE_ROWS`` rows x ``8 * TILE_PANELS`` columns) is finished
on its accumulators while they are still in registers: the exact products
``k - 2 count`` (+ the border correction), then either the float epilogue (scale,
bias, residual, clamp; a multiply then adds, never contracted into a fused
multiply-add, so it rounds as torch does) with the next layer's bits from vector
comparisons (:func:`_tile_affine`), or the integer thresholds packed to bits
(:func:`_tile_bits`), all as 8-lane vector operations. Tiles cut by the matrix edges
go through a small buffer and scalar loops with the same arithmetic. Each thread
takes one contiguous share of the tiles and allocates its scratch once.
"""

from __future__ import annotations

import functools

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic


def _host_has_avx512() -> bool:
    try:
        from llvmlite import binding

        return bool(binding.get_host_cpu_features().get("avx512f"))
    except Exception:  # pragma: no cover - feature query unavailable
        return False


LANES = 8  # uint64 lanes per vector (one AVX-512 register, two AVX2 registers)
# Tile: TILE_ROWS rows of A x TILE_PANELS panels (8 B rows each). With AVX-512, 4 x 4
# gives 16 accumulators of 8 x uint64 (of 32 zmm registers); AVX2 has 16 ymm
# registers, half as wide, so the tile shrinks to 2 x 2 to avoid spills.
TILE_ROWS, TILE_PANELS = (4, 4) if _host_has_avx512() else (2, 2)
TILE_COLS = TILE_PANELS * LANES  # output columns of a tile

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


def _broadcast(builder, value, vec_type):
    """``value`` in every lane of a ``vec_type``."""
    undef = ir.Constant(vec_type, ir.Undefined)
    lane0 = builder.insert_element(undef, value, ir.Constant(ir.IntType(32), 0))
    zeros = ir.Constant(ir.VectorType(ir.IntType(32), vec_type.count), [0] * vec_type.count)
    return builder.shuffle_vector(lane0, undef, zeros)


def _count_tile(context, builder, arrays, i0_v, p0_v, geo, rows: int, panels: int):
    """Emit the popcount loop of a ``rows`` x ``panels`` tile (see :func:`_make_tile`); returns the
    accumulators ``acc[r][c]`` (``<8 x i64>`` values) after the whole reduction."""
    arr_s, arr_f, arr_b = arrays
    n_i_v, n_j_v, len_v, st_i_v, st_j_v = geo
    n_words = builder.mul(builder.mul(n_i_v, n_j_v), len_v)
    panel_stride = builder.mul(n_words, ir.Constant(_I64, LANES))
    b_rows = [
        builder.gep(arr_b.data, [builder.mul(builder.add(p0_v, ir.Constant(_I64, c)), panel_stride)])
        for c in range(panels)
    ]
    row_offs = [builder.load(builder.gep(arr_f.data, [builder.add(i0_v, ir.Constant(_I64, r))])) for r in range(rows)]
    a_rows = [builder.gep(arr_s.data, [row_offs[r]]) for r in range(rows)]
    acc = [[cgutils.alloca_once_value(builder, _splat(0)) for _ in range(panels)] for _ in range(rows)]
    with cgutils.for_range(builder, n_i_v) as loop_i:
        with cgutils.for_range(builder, n_j_v) as loop_j:
            seg_off = builder.add(builder.mul(loop_i.index, st_i_v), builder.mul(loop_j.index, st_j_v))
            seg_start = builder.mul(builder.add(builder.mul(loop_i.index, n_j_v), loop_j.index), len_v)
            seg_a = [builder.gep(a_rows[r], [seg_off]) for r in range(rows)]
            b_off = builder.mul(seg_start, ir.Constant(_I64, LANES))
            seg_b = [builder.gep(b_rows[c], [b_off]) for c in range(panels)]
            with cgutils.for_range(builder, len_v) as loop:
                w = loop.index
                off = builder.mul(w, ir.Constant(_I64, LANES))
                bv = [
                    builder.load(builder.bitcast(builder.gep(seg_b[c], [off]), _VEC.as_pointer()), align=8)
                    for c in range(panels)
                ]
                for r in range(rows):
                    a_vec = _broadcast(builder, builder.load(builder.gep(seg_a[r], [w])), _VEC)
                    for c in range(panels):
                        count = _swar_popcount(builder, builder.xor(a_vec, bv[c]))
                        builder.store(builder.add(builder.load(acc[r][c]), count), acc[r][c])
    return [[builder.load(acc[r][c]) for c in range(panels)] for r in range(rows)]


#: the arguments every tile intrinsic starts with: A's source, row offsets, B's panels, the tile's
#: first row and panel, and the segment geometry of A's rows (see :func:`_make_tile`)
_COUNT_ARGS = ("src", "offs", "bp", "i0", "p0", "n_i", "n_j", "seg_len", "stride_i", "stride_j")


class _Args:
    """An intrinsic's arguments by name, inside its codegen: ``a.array("scale")`` (numba's array
    struct), ``a.i64("k")`` (an integer cast to int64), ``a.value("lo")`` (the LLVM value)."""

    def __init__(self, names, context, builder, signature, args) -> None:
        if len(names) != len(args):
            raise TypeError(f"{len(args)} intrinsic arguments for {len(names)} names")
        self._context, self._builder = context, builder
        self._by_name = {n: (v, t) for n, v, t in zip(names, args, signature.args)}

    def value(self, name: str):
        return self._by_name[name][0]

    def array(self, name: str):
        value, ty = self._by_name[name]
        return self._context.make_array(ty)(self._context, self._builder, value)

    def i64(self, name: str):
        value, ty = self._by_name[name]
        return self._context.cast(self._builder, value, ty, types.int64)


def _count_args(a: _Args):
    """The arrays (src, offs, bp), i0, p0 and the segment geometry of a tile intrinsic."""
    arrays = tuple(a.array(n) for n in _COUNT_ARGS[:3])
    geo = tuple(a.i64(n) for n in _COUNT_ARGS[5:])
    return arrays, a.i64("i0"), a.i64("p0"), geo


def _vec_ptr(builder, base, index, vec_type):
    return builder.bitcast(builder.gep(base, [index]), vec_type.as_pointer())


def _exact_products(builder, counts, k32, corr, ci, row_len, j0):
    """``k - 2 count (+ corr_rows[ci, j0 + 8 c ...] when ci >= 0)`` as ``<8 x i32>`` per panel."""
    i32v = ir.VectorType(ir.IntType(32), LANES)
    k_vec = _broadcast(builder, k32, i32v)
    slots = []
    for cnt in counts:
        v = builder.sub(k_vec, builder.shl(builder.trunc(cnt, i32v), ir.Constant(i32v, [1] * LANES)))
        slots.append(cgutils.alloca_once_value(builder, v))
    with builder.if_then(builder.icmp_signed(">=", ci, ir.Constant(_I64, 0)), likely=False):
        base = builder.add(builder.mul(ci, row_len), j0)
        for c, slot in enumerate(slots):
            cv = builder.load(
                _vec_ptr(builder, corr.data, builder.add(base, ir.Constant(_I64, c * LANES)), i32v), align=4
            )
            builder.store(builder.add(builder.load(slot), cv), slot)
    return [builder.load(slot) for slot in slots]


def _or_bits(builder, bits, brow, words, j0, masks):
    """OR the ``<8 x i1>`` ``masks`` (columns j0, j0 + 8, ...; one word's worth at most) into word
    ``j0 // 32`` of row ``brow`` of the uint32 ``bits``."""
    word = ir.Constant(ir.IntType(32), 0)
    shift0 = builder.trunc(builder.and_(j0, ir.Constant(_I64, 31)), ir.IntType(32))
    for c, m in enumerate(masks):
        part = builder.zext(builder.bitcast(m, ir.IntType(LANES)), ir.IntType(32))
        part = builder.shl(part, builder.add(shift0, ir.Constant(ir.IntType(32), c * LANES)))
        word = builder.or_(word, part)
    ptr = builder.gep(bits.data, [builder.add(builder.mul(brow, words), builder.lshr(j0, ir.Constant(_I64, 5)))])
    builder.store(builder.or_(builder.load(ptr), word), ptr)


def _make_tile(rows: int, panels: int):
    """Intrinsic ``tile(src, offs, bp, i0, p0, n_i, n_j, seg_len, stride_i, stride_j, buf)``.

    Row ``i`` of A is not stored as such: it is the concatenation, for ``si < n_i`` and
    ``sj < n_j`` (row-major), of the ``seg_len`` words
    ``src[offs[i] + si * stride_i + sj * stride_j + w]``. A plain matrix is one
    segment per row (``offs[i] = i * W``); a convolution reads its patches straight
    from the packed input (one segment per kernel row), so im2col is never materialised.
    For ``r < rows`` and ``c < 8 * panels`` the tile computes
    ``buf[r, c] = sum_q popcount(A[i0 + r, q] ^ bp[p0 + c // 8, q, c % 8])``.

    ``src`` (1-D), ``offs`` (int64) and ``bp`` (P, n_i * n_j * seg_len, 8) must be
    C-contiguous (the callers' signatures enforce it); ``buf`` is a uint64 array with
    row stride ``8 * TILE_PANELS``.
    """

    @intrinsic
    def tile(typingctx, src, offs, bp, i0, p0, n_i, n_j, seg_len, stride_i, stride_j, buf):
        sig = types.void(src, offs, bp, i0, p0, n_i, n_j, seg_len, stride_i, stride_j, buf)

        def codegen(context, builder, signature, args):
            a = _Args((*_COUNT_ARGS, "buf"), context, builder, signature, args)
            arrays, i0_v, p0_v, geo = _count_args(a)
            acc = _count_tile(context, builder, arrays, i0_v, p0_v, geo, rows, panels)
            arr_o = a.array("buf")
            for r in range(rows):
                for c in range(panels):
                    ptr = builder.gep(arr_o.data, [ir.Constant(_I64, r * LANES * TILE_PANELS + c * LANES)])
                    builder.store(acc[r][c], builder.bitcast(ptr, _VEC.as_pointer()), align=8)
            return context.get_dummy_value()

        return sig, codegen

    return tile


_AFFINE_ARGS = (
    *_COUNT_ARGS,
    *("meta", "k", "corr_rows", "scale", "bias", "res", "lo", "hi", "fused", "out", "bits", "tb"),
)
_BITS_ARGS = (*_COUNT_ARGS, "meta", "k", "corr_rows", "sgn", "thr", "bits")


@intrinsic
def _tile_affine(
    typingctx,
    src,
    offs,
    bp,
    i0,
    p0,
    n_i,
    n_j,
    seg_len,
    stride_i,
    stride_j,
    meta,
    k,
    corr_rows,
    scale,
    bias,
    res,
    lo,
    hi,
    fused,
    out,
    bits,
    tb,
):
    """A full tile (TILE_ROWS x TILE_PANELS) with the float epilogue done on the accumulators in
    registers: for each row ``r`` (``i = i0 + r``) and the ``8 * TILE_PANELS`` columns ``j`` from
    ``j0 = 8 p0``, ``y = clamp(float(k - 2 count (+ corr_rows[meta[r], j])) * scale[j] + bias[j]
    (+ res[i, j]), lo, hi)`` (the correction when ``meta[r] >= 0``, the residual when ``res`` has rows;
    a multiply then adds, no contraction, as torch's ``acc * scale + bias``; with ``fused`` nonzero
    ``acc * scale + bias`` is one fused multiply-add, rounded once, as torch's CPU BatchNorm rounds
    ``y * alpha + beta``), stored in ``out[i, j]``; when ``bits`` has
    rows, also bit ``j % 32`` of ``bits[meta[TILE_ROWS + r], j // 32]`` ORed with ``y >= tb[j]``.
    ``clamp`` propagates NaN as torch's does."""
    sig = types.void(
        src,
        offs,
        bp,
        i0,
        p0,
        n_i,
        n_j,
        seg_len,
        stride_i,
        stride_j,
        meta,
        k,
        corr_rows,
        scale,
        bias,
        res,
        lo,
        hi,
        fused,
        out,
        bits,
        tb,
    )

    def codegen(context, builder, signature, args):
        a = _Args(_AFFINE_ARGS, context, builder, signature, args)
        arrays, i0_v, p0_v, geo = _count_args(a)
        acc = _count_tile(context, builder, arrays, i0_v, p0_v, geo, TILE_ROWS, TILE_PANELS)
        meta_a, corr, scale_a, bias_a, res_a, out_a, bits_a, tb_a = (
            a.array(n) for n in ("meta", "corr_rows", "scale", "bias", "res", "out", "bits", "tb")
        )
        k32 = builder.trunc(a.i64("k"), ir.IntType(32))
        f32v = ir.VectorType(ir.FloatType(), LANES)
        lo_v, hi_v = _broadcast(builder, a.value("lo"), f32v), _broadcast(builder, a.value("hi"), f32v)
        fused_v = builder.icmp_signed("!=", a.i64("fused"), ir.Constant(_I64, 0))
        fma_v = builder.module.declare_intrinsic(f"llvm.fma.v{LANES}f32", fnty=ir.FunctionType(f32v, [f32v] * 3))
        n_cols = builder.extract_value(out_a.shape, 1)
        corr_len = builder.extract_value(corr.shape, 1)
        words = builder.extract_value(bits_a.shape, 1)
        with_res = builder.icmp_signed(">", builder.extract_value(res_a.shape, 0), ir.Constant(_I64, 0))
        with_bits = builder.icmp_signed(">", builder.extract_value(bits_a.shape, 0), ir.Constant(_I64, 0))
        j0 = builder.mul(p0_v, ir.Constant(_I64, LANES))
        cols = [builder.add(j0, ir.Constant(_I64, c * LANES)) for c in range(TILE_PANELS)]
        scales = [builder.load(_vec_ptr(builder, scale_a.data, j, f32v), align=4) for j in cols]
        biases = [builder.load(_vec_ptr(builder, bias_a.data, j, f32v), align=4) for j in cols]
        for r in range(TILE_ROWS):
            i = builder.add(i0_v, ir.Constant(_I64, r))
            ci = builder.load(builder.gep(meta_a.data, [ir.Constant(_I64, r)]))
            vals = _exact_products(builder, acc[r], k32, corr, ci, corr_len, j0)
            row = builder.mul(i, n_cols)
            ys = []
            for c in range(TILE_PANELS):
                acc_f = builder.sitofp(vals[c], f32v)
                two = builder.fadd(builder.fmul(acc_f, scales[c]), biases[c])
                y = builder.select(fused_v, builder.call(fma_v, [acc_f, scales[c], biases[c]]), two)
                ys.append(cgutils.alloca_once_value(builder, y))
            with builder.if_then(with_res):
                for c in range(TILE_PANELS):
                    rv = builder.load(_vec_ptr(builder, res_a.data, builder.add(row, cols[c]), f32v), align=4)
                    builder.store(builder.fadd(builder.load(ys[c]), rv), ys[c])
            outs = []
            for c in range(TILE_PANELS):
                y = builder.load(ys[c])
                y = builder.select(builder.fcmp_ordered("<", y, lo_v), lo_v, y)
                y = builder.select(builder.fcmp_ordered(">", y, hi_v), hi_v, y)
                builder.store(y, _vec_ptr(builder, out_a.data, builder.add(row, cols[c]), f32v), align=4)
                outs.append(y)
            with builder.if_then(with_bits):
                tbs = [builder.load(_vec_ptr(builder, tb_a.data, j, f32v), align=4) for j in cols]
                masks = [builder.fcmp_ordered(">=", outs[c], tbs[c]) for c in range(TILE_PANELS)]
                brow = builder.load(builder.gep(meta_a.data, [ir.Constant(_I64, TILE_ROWS + r)]))
                _or_bits(builder, bits_a, brow, words, j0, masks)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _tile_bits(
    typingctx, src, offs, bp, i0, p0, n_i, n_j, seg_len, stride_i, stride_j, meta, k, corr_rows, sgn, thr, bits
):
    """A full tile (TILE_ROWS x TILE_PANELS) stored as bits on the accumulators in registers: bit
    ``j % 32`` of ``bits[meta[TILE_ROWS + r], j // 32]`` ORed with ``(k - 2 count (+ corr_rows[meta[r],
    j])) * sgn[j] >= thr[j]`` (int32 operands, an int64 product)."""
    sig = types.void(src, offs, bp, i0, p0, n_i, n_j, seg_len, stride_i, stride_j, meta, k, corr_rows, sgn, thr, bits)

    def codegen(context, builder, signature, args):
        a = _Args(_BITS_ARGS, context, builder, signature, args)
        arrays, i0_v, p0_v, geo = _count_args(a)
        acc = _count_tile(context, builder, arrays, i0_v, p0_v, geo, TILE_ROWS, TILE_PANELS)
        meta_a, corr, sgn_a, thr_a, bits_a = (a.array(n) for n in ("meta", "corr_rows", "sgn", "thr", "bits"))
        k32 = builder.trunc(a.i64("k"), ir.IntType(32))
        i32v = ir.VectorType(ir.IntType(32), LANES)
        corr_len = builder.extract_value(corr.shape, 1)
        words = builder.extract_value(bits_a.shape, 1)
        j0 = builder.mul(p0_v, ir.Constant(_I64, LANES))
        cols = [builder.add(j0, ir.Constant(_I64, c * LANES)) for c in range(TILE_PANELS)]
        sgns = [builder.load(_vec_ptr(builder, sgn_a.data, j, i32v), align=4) for j in cols]
        thrs = [builder.load(_vec_ptr(builder, thr_a.data, j, i32v), align=4) for j in cols]
        for r in range(TILE_ROWS):
            ci = builder.load(builder.gep(meta_a.data, [ir.Constant(_I64, r)]))
            vals = _exact_products(builder, acc[r], k32, corr, ci, corr_len, j0)
            masks = [
                builder.icmp_signed(
                    ">=",
                    builder.mul(builder.sext(vals[c], _VEC), builder.sext(sgns[c], _VEC)),
                    builder.sext(thrs[c], _VEC),
                )
                for c in range(TILE_PANELS)
            ]
            brow = builder.load(builder.gep(meta_a.data, [ir.Constant(_I64, TILE_ROWS + r)]))
            _or_bits(builder, bits_a, brow, words, j0, masks)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _sign_word(typingctx, flat, start):
    """uint32 whose bit ``b`` is ``flat[start + b] >= 0`` for 32 consecutive float32 values: one vector
    comparison (a mask register with AVX-512) instead of 32 scalar tests. NaN gives 0 (as ``>=``)."""
    sig = types.uint32(flat, start)

    def codegen(context, builder, signature, args):
        a = _Args(("flat", "start"), context, builder, signature, args)
        arr, off = a.array("flat"), a.i64("start")
        vec = ir.VectorType(ir.FloatType(), 32)
        values = builder.load(builder.bitcast(builder.gep(arr.data, [off]), vec.as_pointer()), align=4)
        return builder.bitcast(builder.fcmp_ordered(">=", values, ir.Constant(vec, [0.0] * 32)), ir.IntType(32))

    return sig, codegen


@intrinsic
def _ge_word(typingctx, a, a_start, b, b_start):
    """uint32 whose bit ``i`` is ``a[a_start + i] >= b[b_start + i]`` for 32 consecutive float32 pairs
    (one vector comparison)."""
    sig = types.uint32(a, a_start, b, b_start)

    def codegen(context, builder, signature, args):
        vec = ir.VectorType(ir.FloatType(), 32)
        a = _Args(("a", "a_start", "b", "b_start"), context, builder, signature, args)
        loaded = []
        for arr_name in ("a", "b"):
            arr, off = a.array(arr_name), a.i64(f"{arr_name}_start")
            loaded.append(builder.load(builder.bitcast(builder.gep(arr.data, [off]), vec.as_pointer()), align=4))
        return builder.bitcast(builder.fcmp_ordered(">=", loaded[0], loaded[1]), ir.IntType(32))

    return sig, codegen


_tile_full = _make_tile(TILE_ROWS, TILE_PANELS)
_tile_row = _make_tile(1, TILE_PANELS)
_tile_panel = _make_tile(TILE_ROWS, 1)
_tile_one = _make_tile(1, 1)


@njit(inline="always", cache=True)
def _tile_counts(src, offs, bp, geo, i0, p0, buf):
    """``buf[r, c]``: popcounts of rows [i0, i0 + TILE_ROWS) x panels [p0, p0 + TILE_PANELS) (cut at the
    edges); returns the (rows, panels) actually computed."""
    n_i, n_j, seg_len, st_i, st_j = geo
    nrows = min(TILE_ROWS, offs.shape[0] - i0)
    npan = min(TILE_PANELS, bp.shape[0] - p0)
    if nrows == TILE_ROWS and npan == TILE_PANELS:
        _tile_full(src, offs, bp, i0, p0, n_i, n_j, seg_len, st_i, st_j, buf)
    elif nrows == TILE_ROWS:
        for c in range(npan):
            _tile_panel(src, offs, bp, i0, p0 + c, n_i, n_j, seg_len, st_i, st_j, buf[:, c * LANES :])
    elif npan == TILE_PANELS:
        for r in range(nrows):
            _tile_row(src, offs, bp, i0 + r, p0, n_i, n_j, seg_len, st_i, st_j, buf[r:, :])
    else:
        for r in range(nrows):
            for c in range(npan):
                _tile_one(src, offs, bp, i0 + r, p0 + c, n_i, n_j, seg_len, st_i, st_j, buf[r:, c * LANES :])
    return nrows, npan


@njit(inline="always", cache=True)
def _whole_tile(offs, bp, i0, p0, n_cols):
    """Whether the tile at (i0, p0) is whole: TILE_ROWS rows and TILE_PANELS panels of real columns."""
    return i0 + TILE_ROWS <= offs.shape[0] and p0 + TILE_PANELS <= bp.shape[0] and p0 * LANES + TILE_COLS <= n_cols


@njit(inline="always", cache=True)
def _tile_meta(meta, corr_index, period, bit_rows, i0):
    """``meta[r]``: the border-correction row of GEMM row ``i0 + r`` (-1: none); ``meta[TILE_ROWS + r]``:
    the row of the bits output it goes to (:func:`_bit_row`)."""
    for r in range(TILE_ROWS):
        i = i0 + r
        meta[r] = corr_index[i % period] if corr_index.shape[0] > 0 else -1
        meta[TILE_ROWS + r] = _bit_row(bit_rows, i)


@njit(inline="always", cache=True)
def _exact_row(buf, r, k, ncols, corr_index, corr_rows, i, period, j0, vals):
    """``vals[c] = k - 2 buf[r, c] (+ border correction of pixel i % period)``: the exact products."""
    ci = corr_index[i % period] if corr_index.shape[0] > 0 else -1
    if ci >= 0:
        crow = corr_rows[ci]
        for c in range(ncols):
            vals[c] = k - 2 * np.int64(buf[r, c]) + crow[j0 + c]
    else:
        for c in range(ncols):
            vals[c] = k - 2 * np.int64(buf[r, c])


@njit(inline="always", cache=True)
def _block(src, offs, bp, geo, k, out, period, corr_index, corr_rows, i0, p0, buf, vals):
    """Compute and store the int32 outputs of rows [i0, i0 + TILE_ROWS) x panels [p0, p0 + TILE_PANELS)."""
    nrows, npan = _tile_counts(src, offs, bp, geo, i0, p0, buf)
    j0 = p0 * LANES
    ncols = min(npan * LANES, out.shape[1] - j0)
    for r in range(nrows):
        _exact_row(buf, r, k, ncols, corr_index, corr_rows, i0 + r, period, j0, vals)
        row = out[i0 + r]
        for c in range(ncols):
            row[j0 + c] = vals[c]


@intrinsic
def _fma32(typingctx, a, b, c):
    """float32 ``a * b + c`` rounded once (LLVM's ``fma``: the instruction where the CPU has one)."""
    if not all(t == types.float32 for t in (a, b, c)):
        return None

    def codegen(context, builder, signature, args):
        return builder.fma(*args)

    return types.float32(types.float32, types.float32, types.float32), codegen


@njit(inline="always", cache=True)
def _affine_store(vals, scale, bias, rrow, with_res, lo, hi, fused, row, j0, n):
    """``row[j0 + c] = min(max(vals[c] * scale + bias (+ rrow), lo), hi)`` for c < n, in float32;
    ``fused`` nonzero: ``vals[c] * scale + bias`` rounded once (see :func:`_tile_affine`)."""
    if fused and with_res:
        for c in range(n):
            y = _fma32(np.float32(vals[c]), scale[j0 + c], bias[j0 + c]) + rrow[j0 + c]
            row[j0 + c] = min(max(y, lo), hi)
    elif fused:
        for c in range(n):
            y = _fma32(np.float32(vals[c]), scale[j0 + c], bias[j0 + c])
            row[j0 + c] = min(max(y, lo), hi)
    elif with_res:
        for c in range(n):
            y = np.float32(vals[c]) * scale[j0 + c] + bias[j0 + c] + rrow[j0 + c]
            row[j0 + c] = min(max(y, lo), hi)
    else:
        for c in range(n):
            y = np.float32(vals[c]) * scale[j0 + c] + bias[j0 + c]
            row[j0 + c] = min(max(y, lo), hi)


@njit(inline="always", cache=True)
def _block_affine(
    src,
    offs,
    bp,
    geo,
    k,
    out,
    period,
    corr_index,
    corr_rows,
    scale,
    bias,
    res,
    lo,
    hi,
    fused,
    bits,
    tb,
    bit_rows,
    i0,
    p0,
    buf,
    vals,
    meta,
):
    """The same block, stored as float32 ``min(max(acc * scale + bias (+ res), lo), hi)`` (per output
    column; ``res`` (M, N) or empty: a residual added before the clamp); with ``bits`` (M, words) not
    empty, also the bits ``y >= tb[j]`` of those values packed along the columns (the next binary
    layer's input: ``sign(y - t)`` is +1 exactly when ``y >= t``), in row ``bit_rows[i]`` of ``bits``
    (:func:`_bit_row`). A whole tile does all of it on the accumulators in registers (:func:`_tile_affine`)."""
    if _whole_tile(offs, bp, i0, p0, out.shape[1]):
        _tile_meta(meta, corr_index, period, bit_rows, i0)
        n_i, n_j, seg_len, st_i, st_j = geo
        _tile_affine(
            src,
            offs,
            bp,
            i0,
            p0,
            n_i,
            n_j,
            seg_len,
            st_i,
            st_j,
            meta,
            k,
            corr_rows,
            scale,
            bias,
            res,
            lo,
            hi,
            fused,
            out,
            bits,
            tb,
        )
        return
    nrows, npan = _tile_counts(src, offs, bp, geo, i0, p0, buf)
    j0 = p0 * LANES
    ncols = min(npan * LANES, out.shape[1] - j0)
    for r in range(nrows):
        i = i0 + r
        _exact_row(buf, r, k, ncols, corr_index, corr_rows, i, period, j0, vals)
        row = out[i]
        rrow = res[i] if res.shape[0] > 0 else row  # (row unused without a residual)
        if ncols == TILE_COLS:  # a full tile: a fixed trip count, vectorised
            _affine_store(vals, scale, bias, rrow, res.shape[0] > 0, lo, hi, fused, row, j0, TILE_COLS)
        else:
            _affine_store(vals, scale, bias, rrow, res.shape[0] > 0, lo, hi, fused, row, j0, ncols)
        if bits.shape[0] > 0:
            brow = bits[_bit_row(bit_rows, i)]
            if ncols == 32 and (j0 & 31) == 0:  # a whole word (the AVX-512 tile): one vector comparison
                brow[j0 >> 5] = _ge_word(row, j0, tb, j0)
            else:
                for c in range(ncols):
                    j = j0 + c
                    brow[j >> 5] |= np.uint32(row[j] >= tb[j]) << np.uint32(j & 31)


@njit(inline="always", cache=True)
def _bit_row(bit_rows, i):
    """The row of a bits output that GEMM row ``i`` goes to: ``bit_rows[i]``, or ``i`` when ``bit_rows``
    is empty. A map lets the output pixels land inside a zero border: the next convolution's padded
    input, written in place (no padding copy)."""
    if bit_rows.shape[0] > 0:
        return bit_rows[i]
    return i


@njit(inline="always", cache=True)
def _block_bits(src, offs, bp, geo, k, out, period, corr_index, corr_rows, sgn, thr, bit_rows, i0, p0, buf, vals, meta):
    """The same block, stored as the bits ``acc * sgn >= thr`` packed along the columns: column ``j`` is
    bit ``j % 32`` of uint32 word ``j // 32`` of row ``bit_rows[i]`` (:func:`_bit_row`; ``out``
    zero-filled by the caller). A whole tile packs on the accumulators in registers (:func:`_tile_bits`)."""
    if _whole_tile(offs, bp, i0, p0, sgn.shape[0]):
        _tile_meta(meta, corr_index, period, bit_rows, i0)
        n_i, n_j, seg_len, st_i, st_j = geo
        _tile_bits(src, offs, bp, i0, p0, n_i, n_j, seg_len, st_i, st_j, meta, k, corr_rows, sgn, thr, out)
        return
    nrows, npan = _tile_counts(src, offs, bp, geo, i0, p0, buf)
    j0 = p0 * LANES
    ncols = min(npan * LANES, sgn.shape[0] - j0)
    for r in range(nrows):
        _exact_row(buf, r, k, ncols, corr_index, corr_rows, i0 + r, period, j0, vals)
        row = out[_bit_row(bit_rows, i0 + r)]
        if ncols == 32 and (j0 & 31) == 0:  # a whole word (the AVX-512 tile): fixed trip count, vectorised
            word = np.uint32(0)
            for b in range(32):
                word |= np.uint32(vals[b] * sgn[j0 + b] >= thr[j0 + b]) << np.uint32(b)
            row[j0 >> 5] = word
            continue
        c = 0
        while c < ncols:
            j = j0 + c
            n = min(32 - (j & 31), ncols - c)
            word = np.uint32(0)
            for b in range(n):
                word |= np.uint32(vals[c + b] * sgn[j + b] >= thr[j + b]) << np.uint32((j & 31) + b)
            row[j >> 5] |= word
            c += n


@njit(inline="always", cache=True)
def _split(n_rows, n_cols, n_threads, rows_only):
    """How a GEMM's tiles go to threads: ``(outer, inner, by_rows)``, the parallel loop over ``outer``
    blocks. By row blocks (each thread streams B's panels; prefetch-friendly) unless there are few
    rows (a small batch) and more column blocks: then by columns. ``rows_only``: always by rows
    (one thread per output row, for outputs packed along the columns)."""
    row_blocks = (n_rows + TILE_ROWS - 1) // TILE_ROWS
    col_blocks = (n_cols + TILE_PANELS - 1) // TILE_PANELS
    if rows_only or row_blocks >= 2 * n_threads or row_blocks >= col_blocks:
        return row_blocks, col_blocks, True
    return col_blocks, row_blocks, False


@njit(inline="always", cache=True)
def _tile_at(outer, inner, by_rows):
    """(row block, column block) of iteration (outer, inner) of a :func:`_split` loop."""
    a, b = np.int64(outer), np.int64(inner)
    if by_rows:
        return a, b
    return b, a


@njit(inline="always", cache=True)
def _scratch():
    """A thread's scratch for its share of the tiles: the counts of an edge tile, their exact products and a
    whole tile's row metadata (allocated once per share, not per tile)."""
    return (
        np.empty((TILE_ROWS, TILE_PANELS * LANES), np.uint64),
        np.empty(TILE_COLS, np.int32),
        np.empty(2 * TILE_ROWS, np.int64),
    )


def _gemm(src, offs, bp, n_i, n_j, seg_len, stride_i, stride_j, k, out, period, corr_index, corr_rows, n_threads):
    """``out[i, j] = k - 2 * popcount(A[i] ^ B[j]) (+ corr_rows[corr_index[i % P], j])``.

    A's rows are read from ``src`` as described in :func:`_make_tile` (``offs`` has one
    entry per row); ``bp``: B in panels (ceil(N / 8), W, 8) (see :func:`_to_panels`),
    ``W = n_i * n_j * seg_len``; ``out``: (M, N) int32. The optional correction (the
    border term of a convolution, whose rows are the N_img * H_out * W_out output
    pixels, P = H_out * W_out) is stored compactly: ``corr_index`` (P,) int32 gives,
    for each pixel, its row in ``corr_rows`` (B, N) int32, or -1 for pixels that need
    none (the interior); empty arrays mean no correction. ``n_threads`` (numba's thread count; passed in because calling
    ``numba.get_num_threads()`` here would make the function uncacheable) picks the
    parallel split (:func:`_split`). The epilogue writes contiguous runs of a row (vectorised).
    """
    geo = (n_i, n_j, seg_len, stride_i, stride_j)
    outer, inner, by_rows = _split(offs.shape[0], bp.shape[0], n_threads, False)
    chunks = min(outer, n_threads)
    for t in prange(chunks):
        buf, vals, _ = _scratch()
        for a in range(t * outer // chunks, (t + 1) * outer // chunks):
            for b in range(inner):
                ib, jb = _tile_at(a, b, by_rows)
                _block(
                    src,
                    offs,
                    bp,
                    geo,
                    k,
                    out,
                    period,
                    corr_index,
                    corr_rows,
                    ib * TILE_ROWS,
                    jb * TILE_PANELS,
                    buf,
                    vals,
                )


def _gemm_affine(
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
    corr_index,
    corr_rows,
    scale,
    bias,
    res,
    lo,
    hi,
    fused,
    bits,
    tb,
    bit_rows,
    n_threads,
):
    """:func:`_gemm` whose output is float32 ``clamp(acc * scale[j] + bias[j] (+ res[i, j]), lo, hi)``:
    a packed layer's epilogue, the residual addition and the clamping activation after it in the
    GEMM (no int32 product in memory). Compiled without fastmath: the float operations round as
    torch's ``(acc.float() * scale + bias) + res`` does (no contraction into a fused multiply-add),
    or, with ``fused`` nonzero, as torch's CPU BatchNorm then ``+ res``: ``acc * scale + bias`` one
    fused multiply-add (a BatchNorm folded into the epilogue, ``bnn_lab.export.graph``).
    With ``bits`` (zero-filled, see :func:`_block_affine`) the split is by rows only: one thread
    per output word; ``bit_rows`` (int64, M, or empty): the row of ``bits`` each GEMM row goes to."""
    geo = (n_i, n_j, seg_len, stride_i, stride_j)
    outer, inner, by_rows = _split(offs.shape[0], bp.shape[0], n_threads, bits.shape[0] > 0)
    chunks = min(outer, n_threads)
    for t in prange(chunks):
        buf, vals, meta = _scratch()
        for a in range(t * outer // chunks, (t + 1) * outer // chunks):
            for b in range(inner):
                ib, jb = _tile_at(a, b, by_rows)
                _block_affine(
                    src,
                    offs,
                    bp,
                    geo,
                    k,
                    out,
                    period,
                    corr_index,
                    corr_rows,
                    scale,
                    bias,
                    res,
                    lo,
                    hi,
                    fused,
                    bits,
                    tb,
                    bit_rows,
                    ib * TILE_ROWS,
                    jb * TILE_PANELS,
                    buf,
                    vals,
                    meta,
                )


def _gemm_bits(
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
    corr_index,
    corr_rows,
    sgn,
    thr,
    bit_rows,
    n_threads,
):
    """:func:`_gemm` whose output is the packed bits ``acc * sgn[j] >= thr[j]`` (uint32 (M, words),
    zero-filled): a binary layer's output handed to the next one as bits, GEMM row ``i`` in row
    ``bit_rows[i]`` (or ``i`` when empty). Split by rows only, so that every output word is written
    by one thread."""
    geo = (n_i, n_j, seg_len, stride_i, stride_j)
    outer, inner, _ = _split(offs.shape[0], bp.shape[0], n_threads, True)
    chunks = min(outer, n_threads)
    for t in prange(chunks):
        buf, vals, meta = _scratch()
        for ib in range(t * outer // chunks, (t + 1) * outer // chunks):
            for jb in range(inner):
                _block_bits(
                    src,
                    offs,
                    bp,
                    geo,
                    k,
                    out,
                    period,
                    corr_index,
                    corr_rows,
                    sgn,
                    thr,
                    bit_rows,
                    ib * TILE_ROWS,
                    jb * TILE_PANELS,
                    buf,
                    vals,
                    meta,
                )


_GEMM_ARGS = "uint64[::1], int64[::1], uint64[:, :, ::1], int64, int64, int64, int64, int64, int64"
_CORR_ARGS = "int64, int32[::1], int32[:, ::1]"
_GEMM_SIG = f"void({_GEMM_ARGS}, int32[:, ::1], {_CORR_ARGS}, int64)"
_GEMM_AFFINE_SIG = (
    f"void({_GEMM_ARGS}, float32[:, ::1], {_CORR_ARGS}, float32[::1], float32[::1], float32[:, ::1],"
    " float32, float32, int64, uint32[:, ::1], float32[::1], int64[::1], int64)"
)
_GEMM_BITS_SIG = f"void({_GEMM_ARGS}, uint32[:, ::1], {_CORR_ARGS}, int32[::1], int32[::1], int64[::1], int64)"


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


def _pack_pixels(x, xb, pad_top, pad_left, h, w, full):
    """Signs of a channels-last activation ``x`` (N * H * W, C) packed along channels into ``xb``
    (N, Hp, Wp, CW) (uint32, zero-filled by the caller) at offset (``pad_top``, ``pad_left``).
    One task per pixel: its C values are contiguous, no layout conversion; the first ``full`` words
    (``C // 32`` for float32 ``x``, else 0) with one vector comparison each."""
    rows, c = x.shape
    cw_n = xb.shape[3]
    hw = h * w
    flat = x.reshape(-1)
    for r in prange(rows):
        ni = r // hw
        s = r - ni * hw
        hi = s // w
        wi = s - hi * w
        out = xb[ni, pad_top + hi, pad_left + wi]
        for cw in range(full):
            out[cw] = _sign_word(flat, r * c + cw * 32)
        for cw in range(full, cw_n):
            word = np.uint32(0)
            c0 = cw * 32
            for b in range(min(32, max(c - c0, 0))):
                if x[r, c0 + b] >= 0:
                    word |= np.uint32(1) << np.uint32(b)
            out[cw] = word


def _max_pool_clamp(x, n_img, h, w, kh, kw, sh, sw, ph, pw, ho, wo, lo, hi, y, bits, tb, bit_rows):
    """``y = clamp(max_pool2d(x), lo, hi)`` on channels-last float32: ``x`` (N * H * W, C), ``y``
    (N * Ho * Wo, C); the window's taps outside the image are skipped (torch's -inf padding) and a
    NaN wins the maximum, as in torch. With ``bits`` (uint32, zero-filled) not empty, also the bits
    ``y >= tb[c]`` packed along the channels into row ``bit_rows[i]`` of ``bits`` (:func:`_bit_row`),
    the next binary convolution's input. One task per output row of an image."""
    c = x.shape[1]
    full = c // 32
    yf = y.reshape(-1)
    for t in prange(n_img * ho):
        ni = t // ho
        oh = t - ni * ho
        h0 = oh * sh - ph
        for ow in range(wo):
            i = t * wo + ow
            out = y[i]
            for ch in range(c):
                out[ch] = -np.inf
            w0 = ow * sw - pw
            for di in range(kh):
                hh = h0 + di
                if hh < 0 or hh >= h:
                    continue
                for dj in range(kw):
                    ww = w0 + dj
                    if ww < 0 or ww >= w:
                        continue
                    src = x[(ni * h + hh) * w + ww]
                    for ch in range(c):
                        v = src[ch]
                        m = out[ch]
                        out[ch] = v if (v > m or v != v) else m
            for ch in range(c):
                v = out[ch]
                out[ch] = lo if v < lo else (hi if v > hi else v)
            if bits.shape[0] > 0:
                brow = bits[_bit_row(bit_rows, i)]
                for cw in range(full):
                    brow[cw] = _ge_word(yf, i * c + cw * 32, tb, cw * 32)
                for ch in range(full * 32, c):
                    brow[ch >> 5] |= np.uint32(out[ch] >= tb[ch]) << np.uint32(ch & 31)


_POOL_SIG = (
    "void(float32[:, ::1], int64, int64, int64, int64, int64, int64, int64, int64, int64, int64, int64,"
    " float32, float32, float32[:, ::1], uint32[:, ::1], float32[::1], int64[::1])"
)


_OPTS = dict(parallel=True, fastmath=True, cache=True)


@functools.cache
def gemm_kernel():
    return njit(_GEMM_SIG, **_OPTS)(_gemm)


@functools.cache
def gemm_affine_kernel():
    return njit(_GEMM_AFFINE_SIG, parallel=True, fastmath=False, cache=True)(_gemm_affine)


@functools.cache
def gemm_bits_kernel():
    return njit(_GEMM_BITS_SIG, **_OPTS)(_gemm_bits)


@functools.cache
def to_panels_kernel():
    return njit("void(uint64[:, ::1], uint64[:, :, ::1])", **_OPTS)(_to_panels)


@functools.cache
def pack_pixels_kernel():
    return njit(**_OPTS)(_pack_pixels)


@functools.cache
def pack_channels_kernel():
    return njit(**_OPTS)(_pack_channels)


@functools.cache
def max_pool_clamp_kernel():
    return njit(_POOL_SIG, parallel=True, fastmath=False, cache=True, nogil=True)(_max_pool_clamp)

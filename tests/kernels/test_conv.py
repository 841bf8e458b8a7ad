import pytest
import torch
import torch.nn.functional as F

from bnn_lab.kernels import (
    AffineEpilogue,
    PackedConv2dInput,
    PackedConv2dWeight,
    ThresholdEpilogue,
    binary_conv2d,
    binary_conv2d_affine,
    binary_conv2d_affine_bits,
    binary_conv2d_bits,
    pack_conv2d_input,
    pack_conv2d_weight,
    pack_signs,
)
from bnn_lab.kernels.registry import has_numba
from tests.kernels.helpers import conv_ref

BACKENDS = ["torch"] + (["cpu"] if has_numba() else [])

# (N, C, O, H, W, kernel, stride, padding, dilation)
CASES = [
    (2, 16, 8, 6, 6, 1, 1, 0, 1),  # 1x1
    (2, 5, 4, 7, 7, 3, 1, 1, 1),  # 3x3, padding 1
    (2, 40, 6, 9, 8, 3, 2, 1, 1),  # stride 2, C > 32
    (1, 64, 5, 8, 8, 3, 2, 0, 1),  # stride 2, no padding, C = 64
    (2, 33, 3, 9, 9, 3, 1, 2, 2),  # dilation 2, padding 2
    (1, 3, 7, 6, 7, (2, 3), (1, 2), (1, 2), 1),  # rectangular kernel / stride / padding
    (3, 7, 5, 5, 5, 5, 1, 3, 1),  # padding wider than half the kernel
    (1, 70, 4, 8, 9, 3, 1, 1, (2, 1)),  # dilation along H only; C = 70: a zero pad word per pixel
    (2, 70, 9, 9, 8, 3, (2, 1), 2, (1, 2)),  # dilation along W only: one GEMM segment per tap
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n,c,o,h,w,ks,s,p,d", CASES)
def test_matches_float_conv(backend, n, c, o, h, w, ks, s, p, d):
    gen = torch.Generator().manual_seed(c * 100 + o)
    kh, kw = (ks, ks) if isinstance(ks, int) else ks
    x = torch.randn(n, c, h, w, generator=gen)
    wt = torch.randn(o, c, kh, kw, generator=gen)
    ref = conv_ref(x, wt, stride=s, padding=p, dilation=d)
    out = binary_conv2d(x, pack_conv2d_weight(wt), stride=s, padding=p, dilation=d, backend=backend)
    assert out.dtype == torch.int32
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out, ref)
    # a channels_last activation is packed as it lies in memory (pixel by pixel), same result
    x_nhwc = x.contiguous(memory_format=torch.channels_last)
    out = binary_conv2d(x_nhwc, pack_conv2d_weight(wt), stride=s, padding=p, dilation=d, backend=backend)
    assert torch.equal(out, ref)


@pytest.mark.parametrize("backend", BACKENDS)
def test_plus_minus_one_input_and_flat_packed_weights(backend):
    # the documented use: +-1 activations, weights packed as pack_signs(w.reshape(O, -1))
    x = torch.where(torch.randn(2, 24, 10, 10) >= 0, 1.0, -1.0)
    x[0, :, 0, 0] = 0.0  # sign(0) = +1 on the border pixel
    x[1, :, 4, 4] = -0.0
    wt = torch.randn(12, 24, 3, 3)
    flat = pack_signs(wt.reshape(12, -1))
    assert flat.shape == (12, (24 * 9 + 31) // 32)
    out = binary_conv2d(x, flat, stride=1, padding=1, kernel_size=3, backend=backend)
    assert torch.equal(out, conv_ref(x, wt, padding=1))
    # a float weight tensor works too, and gives the same thing
    assert torch.equal(binary_conv2d(x, wt, padding=1, backend=backend), out)


@pytest.mark.parametrize("backend", BACKENDS)
def test_packed_input(backend):
    x = torch.randn(2, 35, 6, 5)
    wt = torch.randn(4, 35, 3, 3)
    out = binary_conv2d(pack_conv2d_input(x), pack_conv2d_weight(wt), padding=1, stride=2, backend=backend)
    assert torch.equal(out, conv_ref(x, wt, padding=1, stride=2))


@pytest.mark.filterwarnings("ignore:Using padding=.same.")
def test_same_padding_and_valid():
    x = torch.randn(1, 6, 7, 7)
    wt = torch.randn(3, 6, 4, 4)  # even kernel: 'same' pads asymmetrically
    assert torch.equal(binary_conv2d(x, wt, padding="same"), conv_ref(x, wt, padding="same"))
    assert torch.equal(binary_conv2d(x, wt, padding="valid"), conv_ref(x, wt))


def test_border_correction_is_cached_and_nonzero_only_at_the_border():
    wt = torch.randn(4, 8, 3, 3)
    pw = pack_conv2d_weight(wt)
    x = torch.randn(1, 8, 6, 6)
    binary_conv2d(x, pw, padding=1)
    corr = pw.border_correction((6, 6), (1, 1), (1, 1, 1, 1), (1, 1))
    assert corr is pw.border_correction((6, 6), (1, 1), (1, 1, 1, 1), (1, 1))  # cached object
    assert corr.shape == (36, 4)
    corr = corr.T.reshape(4, 6, 6)
    assert torch.count_nonzero(corr[:, 1:-1, 1:-1]) == 0
    # top-left output pixel: its padded taps are row 0 and column 0 of the kernel
    s = torch.where(wt >= 0, 1, -1).sum(dim=1)  # (O, 3, 3)
    expect = s[:, 0, :].sum(dim=1) + s[:, 1:, 0].sum(dim=1)
    assert torch.equal(corr[:, 0, 0], expect.to(torch.int32))
    assert pw.border_correction((6, 6), (1, 1), (0, 0, 0, 0), (1, 1)) is None


def test_weight_conversion_cache_follows_inplace_updates():
    x = torch.randn(1, 4, 5, 5)
    wt = torch.randn(3, 4, 3, 3)
    first = binary_conv2d(x, wt, padding=1)
    with torch.no_grad():
        wt.neg_()  # new signs, same tensor object
    second = binary_conv2d(x, wt, padding=1)
    assert torch.equal(second, conv_ref(x, wt, padding=1))
    assert torch.equal(second, -first)


def test_errors():
    x = torch.randn(1, 4, 5, 5)
    wt = torch.randn(4, 4, 3, 3)
    with pytest.raises(NotImplementedError):
        binary_conv2d(x, wt, groups=2)
    with pytest.raises(ValueError):
        binary_conv2d(torch.randn(1, 5, 5, 5), pack_conv2d_weight(wt))  # channel mismatch
    with pytest.raises(ValueError):
        binary_conv2d(x, pack_signs(wt.reshape(4, -1)))  # flat bits without kernel_size
    with pytest.raises(ValueError):
        binary_conv2d(x, wt, backend="nope")


def test_from_flat_bits_equals_from_weight():
    wt = torch.randn(5, 9, 3, 3)
    a = PackedConv2dWeight.from_flat_bits(pack_signs(wt.reshape(5, -1)), 9, 3)
    b = pack_conv2d_weight(wt)
    assert torch.equal(a.rows, b.rows) and torch.equal(a.tap_sums, b.tap_sums)
    assert a.k == 81 and a.kernel_size == (3, 3)


def test_matches_reference_against_fp_conv_on_pm1_values():
    # guard against a reference that is itself wrong: compare with a hand-made product
    x = torch.tensor([[[[1.0, -1.0], [-1.0, 1.0]]]])
    wt = torch.tensor([[[[1.0, 1.0], [1.0, -1.0]]]])
    # zero padding 1, kernel 2x2: output 3x3; centre = 1 - 1 - 1 - 1 = -2
    out = binary_conv2d(x, wt, padding=1)
    assert out.shape == (1, 1, 3, 3)
    assert out[0, 0, 1, 1].item() == -2
    assert torch.equal(out, F.conv2d(x, wt, padding=1).to(torch.int32))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n,c,o,h,w,ks,s,p,d", [CASES[1], CASES[2], CASES[4], CASES[8], (1, 64, 70, 7, 7, 3, 1, 1, 1)])
def test_epilogues_match_the_float_conv_followed_by_the_same_float_ops(backend, n, c, o, h, w, ks, s, p, d):
    """Affine: float32 acc * scale + bias, rounded as torch does it (no fused multiply-add);
    threshold: the bits [sgn * acc >= thr] packed along channels, as pack_signs packs them."""
    gen = torch.Generator().manual_seed(o * 7 + c)
    kh, kw = (ks, ks) if isinstance(ks, int) else ks
    x = torch.randn(n, c, h, w, generator=gen)
    wt = torch.randn(o, c, kh, kw, generator=gen)
    ref = conv_ref(x, wt, stride=s, padding=p, dilation=d)  # float +-1 conv, as int32
    scale, bias = torch.rand(o, generator=gen) + 0.1, torch.randn(o, generator=gen)
    pw = pack_conv2d_weight(wt)
    out = binary_conv2d_affine(x, pw, AffineEpilogue(scale, bias), stride=s, padding=p, dilation=d, backend=backend)
    expect = ref.to(torch.float32) * scale.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)
    assert out.dtype == torch.float32 and torch.equal(out, expect)
    out = binary_conv2d_affine(x, pw, AffineEpilogue(None, bias), stride=s, padding=p, dilation=d, backend=backend)
    assert torch.equal(out, ref.to(torch.float32) + bias.view(1, -1, 1, 1))
    # a residual added and a Hardtanh after it, as the modules do it: F.hardtanh(conv * s + b + r)
    res = torch.randn(ref.shape, generator=gen).contiguous(memory_format=torch.channels_last) * 3
    out = binary_conv2d_affine(
        x, pw, AffineEpilogue(scale, bias, res, (-1.0, 1.0)), stride=s, padding=p, dilation=d, backend=backend
    )
    assert torch.equal(out, F.hardtanh(expect + res))
    assert (out == 1).any() and (out == -1).any() and ((out > -1) & (out < 1)).any()  # every branch taken
    out = binary_conv2d_affine(
        x,
        pw,
        AffineEpilogue(scale, bias, res.contiguous(), (0.0, float("inf"))),
        stride=s,
        padding=p,
        dilation=d,
        backend=backend,
    )  # NCHW residual
    assert torch.equal(out, F.relu(expect + res))
    # and the signs of (output - t) packed for the next binary layer, from the same epilogue
    t = torch.randn(o, generator=gen) * 0.3
    out, nxt = binary_conv2d_affine_bits(
        x,
        pw,
        AffineEpilogue(scale, bias, res, (-1.0, 1.0), bits_threshold=t),
        stride=s,
        padding=p,
        dilation=d,
        backend=backend,
    )
    assert torch.equal(out, F.hardtanh(expect + res))
    want = pack_conv2d_input(out - t.view(1, -1, 1, 1)).bits
    assert nxt.channels == o and torch.equal(nxt.bits[..., : want.shape[-1]], want)
    assert not nxt.bits[..., want.shape[-1] :].any()
    sgn = torch.where(torch.rand(o, generator=gen) < 0.5, 1, -1).to(torch.int32)
    thr = torch.randint(-5, 6, (o,), generator=gen, dtype=torch.int32)
    bits = binary_conv2d_bits(x, pw, ThresholdEpilogue(sgn, thr), stride=s, padding=p, dilation=d, backend=backend)
    decided = ref * sgn.view(1, -1, 1, 1) >= thr.view(1, -1, 1, 1)  # (N, O, H', W') booleans
    expect_bits = pack_conv2d_input(torch.where(decided, 1.0, -1.0)).bits
    assert bits.channels == o and bits.bits.shape[-1] == 2 * ((o + 63) // 64)  # whole uint64 words per pixel
    assert torch.equal(bits.bits[..., : expect_bits.shape[-1]], expect_bits)
    assert not bits.bits[..., expect_bits.shape[-1] :].any()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n,c,o,h,w,ks,s,p,d", [CASES[1], CASES[2], CASES[8], (2, 64, 70, 8, 8, 3, 1, 1, 1)])
def test_a_fused_epilogue_gives_torchs_batchnorm_of_the_float_conv_bit_for_bit(backend, n, c, o, h, w, ks, s, p, d):
    """A BatchNorm folded into the epilogue (``fused``: ``acc * alpha + beta`` rounded once) returns
    what torch's eval BatchNorm returns for the float +-1 convolution, then the residual and clamp as
    the modules add them; the unfused epilogue (two roundings) differs from it in the last bit."""
    from bnn_lab.export.graph import batchnorm_affine

    gen = torch.Generator().manual_seed(o * 11 + c)
    kh, kw = (ks, ks) if isinstance(ks, int) else ks
    x, wt = torch.randn(n, c, h, w, generator=gen), torch.randn(o, c, kh, kw, generator=gen)
    ref = conv_ref(x, wt, stride=s, padding=p, dilation=d).to(torch.float32)
    bn = torch.nn.BatchNorm2d(o).eval()
    with torch.no_grad():
        bn.weight.uniform_(0.2, 2.0, generator=gen)
        bn.bias.uniform_(-1.0, 1.0, generator=gen)
        bn.running_mean.uniform_(-5.0, 5.0, generator=gen)
        bn.running_var.uniform_(0.3, 30.0, generator=gen)
        want = bn(ref)
    alpha, beta = batchnorm_affine(bn)
    pw, conv = pack_conv2d_weight(wt), dict(stride=s, padding=p, dilation=d, backend=backend)
    assert torch.equal(binary_conv2d_affine(x, pw, AffineEpilogue(alpha, beta, fused=True), **conv), want)
    assert not torch.equal(binary_conv2d_affine(x, pw, AffineEpilogue(alpha, beta), **conv), want)
    res = torch.randn(ref.shape, generator=gen).contiguous(memory_format=torch.channels_last)
    out, nxt = binary_conv2d_affine_bits(x, pw, AffineEpilogue(alpha, beta, res, (-1.0, 1.0), 0.0, fused=True), **conv)
    assert torch.equal(out, F.hardtanh(want + res))
    packed = pack_conv2d_input(out).bits
    assert torch.equal(nxt.bits[..., : packed.shape[-1]], packed)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("out_padding", [(1, 1, 1, 1), (2, 0, 1, 3)])
def test_bits_written_inside_the_next_convolutions_border(backend, out_padding):
    """With ``out_padding`` the packed bits come inside a zero border of that many pixels: the same
    bits inside, nothing outside, and a next convolution with those pads reads them as they lie and
    gives what it gives from the unpadded bits (and, through a copy, for other pads)."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 40, 7, 6, generator=gen)
    wt, wt2 = torch.randn(70, 40, 3, 3, generator=gen), torch.randn(5, 70, 3, 3, generator=gen)
    pw, pw2 = pack_conv2d_weight(wt), pack_conv2d_weight(wt2)
    sgn = torch.where(torch.rand(70, generator=gen) < 0.5, 1, -1).to(torch.int32)
    thr = torch.randint(-5, 6, (70,), generator=gen, dtype=torch.int32)
    scale, bias, res = torch.rand(70, generator=gen) + 0.1, torch.randn(70, generator=gen), torch.randn(2, 70, 7, 6)
    for epilogue in (ThresholdEpilogue(sgn, thr), AffineEpilogue(scale, bias, res, (-1.0, 1.0), bits_threshold=0.1)):
        conv = binary_conv2d_bits if isinstance(epilogue, ThresholdEpilogue) else binary_conv2d_affine_bits
        plain = conv(x, pw, epilogue, padding=1, backend=backend)
        padded = conv(x, pw, epilogue, padding=1, backend=backend, out_padding=out_padding)
        if isinstance(epilogue, AffineEpilogue):
            assert torch.equal(padded[0], plain[0])
            plain, padded = plain[1], padded[1]
        top, bottom, left, right = out_padding
        assert padded.pads == out_padding and padded.shape == plain.shape == (2, 70, 7, 6)
        assert padded.bits.shape == (2, 7 + top + bottom, 6 + left + right, plain.bits.shape[-1])
        assert torch.equal(padded.unpadded(), plain.bits)
        border = padded.bits.clone()
        border[:, top : top + 7, left : left + 6] = 0
        assert not border.any()
        for pad in (top, 1, 0):  # the next layer's own padding: read as it lies, or re-padded
            want = binary_conv2d(plain, pw2, padding=(pad, pad), backend=backend)
            assert torch.equal(binary_conv2d(padded, pw2, padding=(pad, pad), backend=backend), want)
            assert torch.equal(want, conv_ref(torch.where(unpack_bits(plain), 1.0, -1.0), wt2, padding=pad))


def unpack_bits(packed) -> torch.Tensor:
    """(N, C, H, W) booleans from a PackedConv2dInput without a border."""
    words = packed.bits
    bit = torch.arange(32, dtype=torch.int32)
    flat = ((words.unsqueeze(-1) >> bit) & 1).bool().reshape(*words.shape[:3], -1)[..., : packed.channels]
    return flat.permute(0, 3, 1, 2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_channels_last_signs_of_zero_in_whole_words(backend):
    # 64 channels: two whole words per pixel, packed with one vector comparison each on the cpu backend
    x = torch.where(torch.randn(2, 64, 5, 5) >= 0, 1.0, -1.0)
    x[0, :, 1, 1], x[1, :, 2, 3], x[1, 5:40, 0, 0] = 0.0, -0.0, -0.0  # sign(+-0) = +1
    wt = torch.randn(8, 64, 3, 3)
    ref = conv_ref(torch.where(x >= 0, 1.0, -1.0), wt, padding=1)
    out = binary_conv2d(
        x.contiguous(memory_format=torch.channels_last), pack_conv2d_weight(wt), padding=1, backend=backend
    )
    assert torch.equal(out, ref)


@pytest.mark.skipif(not has_numba(), reason="the cpu backend needs numba")
def test_a_next_convolution_reads_the_bits_a_packed_input_holds_now():
    """Packed outputs of the ``cpu`` kernels keep the kernels' view of their bits for the next call; bits
    changed in place or replaced afterwards are what that call reads."""
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(1, 64, 6, 6, generator=gen)
    pw, pw2 = (
        pack_conv2d_weight(torch.randn(64, 64, 3, 3, generator=gen)),
        pack_conv2d_weight(torch.randn(8, 64, 3, 3, generator=gen)),
    )
    sgn, thr = torch.ones(64, dtype=torch.int32), torch.zeros(64, dtype=torch.int32)
    handed = binary_conv2d_bits(x, pw, ThresholdEpilogue(sgn, thr), padding=1, backend="cpu", out_padding=(1, 1, 1, 1))
    flipped = ~handed.unpadded()  # every bit of the image inverted (64 channels: both words used)
    expect = binary_conv2d(PackedConv2dInput(flipped, 64), pw2, padding=1, backend="torch")
    handed.bits[:, 1:-1, 1:-1] = flipped  # in place
    assert torch.equal(binary_conv2d(handed, pw2, padding=1, backend="cpu"), expect)
    handed.bits = handed.bits.clone()  # replaced
    handed.bits[:, 1:-1, 1:-1, :2] = 0
    assert torch.equal(
        binary_conv2d(handed, pw2, padding=1, backend="cpu"),
        binary_conv2d(PackedConv2dInput(torch.zeros_like(flipped), 64), pw2, padding=1, backend="torch"),
    )


def test_each_entry_point_takes_its_own_epilogue():
    """One return kind per function: an epilogue meant for another entry point is refused by name."""
    x, pw = torch.randn(1, 8, 4, 4), pack_conv2d_weight(torch.randn(4, 8, 3, 3))
    scale, bias = torch.ones(4), torch.zeros(4)
    with pytest.raises(TypeError, match="AffineEpilogue without bits_threshold"):
        binary_conv2d_affine(x, pw, AffineEpilogue(scale, bias, bits_threshold=0.0), padding=1, backend="torch")
    with pytest.raises(TypeError, match="AffineEpilogue with bits_threshold"):
        binary_conv2d_affine_bits(x, pw, AffineEpilogue(scale, bias), padding=1, backend="torch")
    with pytest.raises(TypeError, match="takes a ThresholdEpilogue, got AffineEpilogue"):
        binary_conv2d_bits(x, pw, AffineEpilogue(scale, bias), padding=1, backend="torch")
    assert binary_conv2d(x, pw, padding=1, backend="torch").dtype == torch.int32


def test_a_registered_backend_runs_its_own_convolution_else_gathers_for_its_matmul():
    """register_backend(name, matmul, conv=...) puts the convolution beside the matmul; without one,
    the backend's convolutions gather the patches for its matmul. Both exact."""
    from bnn_lab.kernels import BACKENDS, CONV_BACKENDS, ConvImplementation, register_backend
    from bnn_lab.kernels.backends.torch_ref import binary_matmul_torch
    from bnn_lab.kernels.conv import GATHERED

    calls = {"conv": 0, "matmul": 0}

    def matmul(a, b, k):
        calls["matmul"] += 1
        return binary_matmul_torch(a, b, k)

    def own(*args):
        calls["conv"] += 1
        return GATHERED.run(*args)

    x, w = torch.randn(2, 40, 9, 8), torch.randn(6, 40, 3, 3)
    ref = conv_ref(x, w, 2, 1, 1)
    try:
        register_backend("counting", matmul, conv=ConvImplementation(own))
        assert torch.equal(binary_conv2d(x, w, 2, 1, backend="counting"), ref)
        assert calls == {"conv": 1, "matmul": 1}
        register_backend("counting", matmul)
        assert "counting" not in CONV_BACKENDS
        assert torch.equal(binary_conv2d(x, w, 2, 1, backend="counting"), ref)
        assert calls == {"conv": 1, "matmul": 2}
        with pytest.raises(TypeError, match="conv must be a ConvImplementation"):
            register_backend("counting", matmul, conv=own)
    finally:
        BACKENDS.pop("counting", None)
        CONV_BACKENDS.pop("counting", None)

"""Every CPU backend of every kernel against its plain numpy reference (bnn_lab.kernels.reference),
which shares no code with them: the matmul, the convolution with each epilogue, the pooling pass
and the input packing."""

import numpy as np
import pytest
import torch

from bnn_lab.kernels import (
    AffineEpilogue,
    ThresholdEpilogue,
    binary_conv2d,
    binary_conv2d_affine,
    binary_conv2d_affine_bits,
    binary_conv2d_bits,
    binary_matmul,
    max_pool2d_clamp,
    pack_conv2d_input,
    pack_signs,
    reference,
)
from bnn_lab.kernels.registry import has_numba

BACKENDS = ["torch"] + (["cpu"] if has_numba() else [])
GEN = torch.Generator().manual_seed(7)
# (N, C, O, H, W, kernel, stride, (top, bottom, left, right), dilation)
CONVS = [
    (2, 40, 9, 9, 8, (3, 3), (2, 1), (1, 1, 1, 1), (1, 1)),
    (1, 70, 5, 7, 9, (3, 2), (1, 2), (2, 2, 0, 0), (2, 1)),
    (2, 64, 33, 6, 6, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1)),
]


def _unpacked_bits(packed, channels: int) -> np.ndarray:
    """bool (N, C, H, W) from a PackedConv2dInput (its border dropped)."""
    words = packed.unpadded().contiguous().numpy().view(np.uint32)
    bits = (words[..., :, None] >> np.arange(32, dtype=np.uint32)) & 1
    return bits.reshape(*words.shape[:3], -1)[..., :channels].transpose(0, 3, 1, 2).astype(bool)


def test_fma32_rounds_the_exact_sum_once():
    # a * b = 2^-24 (1 - 2^-46): the float64 sum 1 + 2^-23 + 2^-24 is a float32 tie that the exact
    # sum lies just below; rounding it again would give 1 + 2^-22, a fused multiply-add 1 + 2^-23
    a, b, c = np.float32(1 + 2**-23), np.float32(2**-24 * (1 - 2**-23)), np.float32(1 + 2**-23)
    assert np.float32(np.float64(a) * np.float64(b) + np.float64(c)) == np.float32(1 + 2**-22)
    assert reference.fma32(a, b, c) == c
    assert reference.fma32(-a, b, -c) == -c
    # torch's eval BatchNorm on the CPU is one fused multiply-add per value: y * alpha + beta
    bn = torch.nn.BatchNorm2d(16).eval()
    with torch.no_grad():
        for t, lo, hi in ((bn.weight, -2, 2), (bn.bias, -1, 1), (bn.running_mean, -30, 30), (bn.running_var, 0.1, 50)):
            t.uniform_(lo, hi, generator=GEN)
        y = torch.randint(-300, 300, (4, 16, 9, 9), generator=GEN).to(torch.float32)
        want = bn(y).numpy()
        alpha = (bn.weight * torch.rsqrt(bn.running_var + bn.eps)).numpy().reshape(1, -1, 1, 1)
        beta = bn(torch.zeros(1, 16, 1, 1)).numpy()
    assert np.array_equal(reference.fma32(y.numpy(), alpha, beta), want)
    assert not np.array_equal(y.numpy() * alpha + beta, want)  # two roundings are not what it does


@pytest.mark.parametrize("backend", BACKENDS)
def test_matmul(backend):
    a = torch.randn(7, 100, generator=GEN)
    b = torch.randn(5, 100, generator=GEN)
    a_bits, b_bits = pack_signs(a), pack_signs(b)
    want = reference.packed_matmul(a_bits.numpy(), b_bits.numpy(), 100)
    assert np.array_equal(binary_matmul(a_bits, b_bits, 100, backend=backend).numpy(), want)
    assert np.array_equal(want, reference.signs(a.numpy()) @ reference.signs(b.numpy()).T)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CONVS)
def test_convolution_and_its_epilogues(backend, case):
    n, c, o, h, w, kernel, stride, pads, dilation = case
    x = torch.randn(n, c, h, w, generator=GEN)
    wt = torch.randn(o, c, *kernel, generator=GEN)
    padding = (pads[0], pads[2])
    acc = reference.sign_conv2d(x.numpy(), wt.numpy(), stride, pads, dilation)
    got = binary_conv2d(x, wt, stride, padding, dilation, backend=backend)
    assert np.array_equal(got.numpy(), acc)

    scale, bias = torch.rand(o, generator=GEN) + 0.5, torch.randn(o, generator=GEN)
    residual = torch.randn(*acc.shape, generator=GEN)
    threshold = 0.1 * torch.randn(o, generator=GEN)
    epilogue = AffineEpilogue(scale, bias, residual, (-1.0, 1.0))
    want = reference.affine(acc, scale.numpy(), bias.numpy(), residual.numpy(), (-1.0, 1.0))
    y = binary_conv2d_affine(x, wt, epilogue, stride, padding, dilation, backend=backend)
    assert np.array_equal(y.numpy(), want)
    with_bits = AffineEpilogue(scale, bias, residual, (-1.0, 1.0), threshold)
    y, bits = binary_conv2d_affine_bits(x, wt, with_bits, stride, padding, dilation, backend=backend)
    assert np.array_equal(y.numpy(), want)
    assert np.array_equal(_unpacked_bits(bits, o), want - threshold.numpy().reshape(1, -1, 1, 1) >= 0)

    sgn = torch.where(torch.rand(o, generator=GEN) < 0.5, -1, 1).to(torch.int32)
    thr = torch.randint(-4, 5, (o,), generator=GEN, dtype=torch.int32)
    bits = binary_conv2d_bits(x, wt, ThresholdEpilogue(sgn, thr), stride, padding, dilation, backend=backend)
    assert np.array_equal(_unpacked_bits(bits, o), reference.threshold_bits(acc, sgn.numpy(), thr.numpy()))


@pytest.mark.parametrize("backend", BACKENDS)
def test_pooling_pass(backend):
    x = torch.randn(2, 40, 11, 10, generator=GEN).contiguous(memory_format=torch.channels_last)
    threshold = 0.2 * torch.randn(40, generator=GEN)
    y, bits = max_pool2d_clamp(x, 3, 2, 1, (-1.0, 1.0), bits_threshold=threshold, backend=backend)
    want = reference.max_pool_clamp(x.numpy(), (3, 3), (2, 2), (1, 1), (-1.0, 1.0))
    assert np.array_equal(y.numpy(), want)
    assert np.array_equal(_unpacked_bits(bits, 40), want - threshold.numpy().reshape(1, -1, 1, 1) >= 0)


def test_input_packing():
    x = torch.randn(2, 70, 5, 4, generator=GEN)
    x[0, 3, 1, 1] = 0.0  # sign(0) = +1
    x[1, 5, 2, 3] = -0.0
    packed = pack_conv2d_input(x)
    assert np.array_equal(packed.bits.numpy(), reference.pack_channels(x.numpy()))

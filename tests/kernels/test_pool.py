"""max_pool2d_clamp: clamp(max_pool2d(x)) and the next binary convolution's packed input in one pass,
against torch's max-pooling, clamp and packing."""

import pytest
import torch
import torch.nn.functional as F

from bnn_lab.kernels import binary_conv2d, max_pool2d_clamp, pack_conv2d_input, pack_conv2d_weight
from bnn_lab.kernels.conv import words_per_pixel

BACKENDS = ["torch", "cpu"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "n,c,h,w,k,s,p",
    [(2, 64, 15, 14, 3, 2, 1), (1, 40, 9, 9, 2, 2, 0), (3, 3, 7, 8, 3, 1, 1), (1, 96, 8, 8, (3, 2), (2, 1), (1, 0))],
)
@pytest.mark.parametrize("clamp", [(-1.0, 1.0), (0.0, float("inf")), None])
def test_pooled_clamped_values_and_bits_equal_torchs(backend, n, c, h, w, k, s, p, clamp):
    gen = torch.Generator().manual_seed(c + h)
    x = (torch.randn(n, c, h, w, generator=gen) * 2).contiguous(memory_format=torch.channels_last)
    want = F.max_pool2d(x, k, s, p)
    if clamp is not None:
        want = want.clamp(*clamp)
    out = max_pool2d_clamp(x, k, s, p, clamp, backend=backend)
    assert out.shape == want.shape and torch.equal(out, want)
    if clamp == (-1.0, 1.0):
        assert (out == 1).any() and (out == -1).any()  # both bounds reached
    t = torch.randn(c, generator=gen) * 0.3
    for thr, pads in ((t, (1, 1, 1, 1)), (0.0, (0, 0, 0, 0)), (t, (2, 0, 1, 3))):
        out, bits = max_pool2d_clamp(x, k, s, p, clamp, bits_threshold=thr, out_padding=pads, backend=backend)
        assert torch.equal(out, want)
        packed = pack_conv2d_input(want - (thr.view(1, -1, 1, 1) if isinstance(thr, torch.Tensor) else thr)).bits
        top, bottom, left, right = pads
        assert bits.pads == pads and bits.channels == c and bits.shape == tuple(want.shape)
        assert bits.bits.shape == (n, want.shape[2] + top + bottom, want.shape[3] + left + right, words_per_pixel(c))
        inside = bits.unpadded()
        assert torch.equal(inside[..., : packed.shape[-1]], packed) and not inside[..., packed.shape[-1] :].any()
        border = bits.bits.clone()
        border[:, top : top + want.shape[2], left : left + want.shape[3]] = 0
        assert not border.any()


def test_a_binary_convolution_reads_the_pooled_bits_as_it_reads_the_float_output():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 64, 16, 16, generator=gen).contiguous(memory_format=torch.channels_last)
    pw = pack_conv2d_weight(torch.randn(32, 64, 3, 3, generator=gen))
    out, bits = max_pool2d_clamp(x, 3, 2, 1, (-1.0, 1.0), bits_threshold=0.0, out_padding=(1, 1, 1, 1), backend="cpu")
    assert torch.equal(binary_conv2d(bits, pw, padding=1), binary_conv2d(out, pw, padding=1))
    signs = torch.where(out >= 0, 1.0, -1.0)
    assert torch.equal(binary_conv2d(bits, pw, padding=1), F.conv2d(signs, pw_float(pw), padding=1).to(torch.int32))


def pw_float(pw):
    """The +-1 float weights a packed weight holds."""
    from bnn_lab.kernels import unpack_signs

    o, (kh, kw), c = pw.out_channels, pw.kernel_size, pw.in_channels
    taps = unpack_signs(pw.rows.reshape(o * kh * kw, -1), pw.words_per_tap * 32, dtype=torch.float32)
    return taps[:, :c].reshape(o, kh, kw, c).permute(0, 3, 1, 2)


def test_nan_wins_the_maximum_and_other_layouts_fall_back_to_torch(monkeypatch):
    from bnn_lab.kernels.backends import numba_cpu

    calls = []
    kernel = numba_cpu.max_pool_clamp_into
    monkeypatch.setattr(numba_cpu, "max_pool_clamp_into", lambda *a, **k: calls.append(1) or kernel(*a, **k))
    x = torch.randn(1, 32, 6, 6).contiguous(memory_format=torch.channels_last)
    x[0, 5, 2, 3] = float("nan")
    want = F.max_pool2d(x, 2, 2).clamp(-1.0, 1.0)
    out = max_pool2d_clamp(x, 2, 2, 0, (-1.0, 1.0), backend="cpu")
    assert calls == [1]  # the one-pass kernel
    assert torch.equal(out.isnan(), want.isnan()) and out.isnan().sum() == 1
    assert torch.equal(out.nan_to_num(), want.nan_to_num())
    nchw = x.contiguous()  # not channels-last: torch operations, the same values
    assert torch.equal(max_pool2d_clamp(nchw, 2, 2, 0, (-1.0, 1.0), backend="cpu").nan_to_num(), want.nan_to_num())
    assert calls == [1]
    with pytest.raises(ValueError, match="invalid max-pooling"):
        max_pool2d_clamp(x, 2, 2, 2, backend="cpu")

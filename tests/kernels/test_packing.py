import pytest
import torch

from bnn_lab.kernels import num_words, pack_signs, sign, unpack_signs
from tests.kernels.helpers import sign_ref


@pytest.mark.parametrize("k", [1, 31, 32, 33, 100, 4608])
def test_roundtrip_and_shape(k):
    x = torch.randn(3, 2, k)
    bits = pack_signs(x)
    assert bits.dtype == torch.int32
    assert bits.shape == (3, 2, (k + 31) // 32) == (3, 2, num_words(k))
    assert torch.equal(unpack_signs(bits, k), sign_ref(x))


def test_bit_order_lsb_first_and_zero_padding():
    # element 32 * i + j -> bit j of word i
    k = 40
    x = -torch.ones(k)
    x[0] = 1.0  # word 0, bit 0
    x[31] = 1.0  # word 0, bit 31 (sign bit of the int32)
    x[33] = 1.0  # word 1, bit 1
    bits = pack_signs(x)
    assert bits.tolist() == [1 - 2**31, 2]
    # the 24 padding bits of word 1 are 0 even when every real element is +1
    assert pack_signs(torch.ones(k)).tolist() == [-1, 0xFF]


def test_sign_of_zero_and_negative_zero_is_plus_one():
    x = torch.tensor([0.0, -0.0, -1e-30, 1e-30, -1.0])
    assert sign(x).tolist() == [1.0, 1.0, -1.0, 1.0, -1.0]
    assert pack_signs(x).tolist() == [0b01011]
    assert pack_signs(torch.zeros(64)).tolist() == [-1, -1]
    assert pack_signs(torch.full((64,), -0.0)).tolist() == [-1, -1]


def test_other_dtypes_and_devices_agree():
    x = torch.randn(5, 70)
    ref = pack_signs(x)
    assert torch.equal(pack_signs(x.double()), ref)
    assert torch.equal(pack_signs(x.to(torch.bfloat16)), ref)  # bf16 keeps every sign
    if torch.cuda.is_available():
        assert torch.equal(pack_signs(x.cuda()).cpu(), ref)


def test_unpack_rejects_bad_input():
    with pytest.raises(TypeError):
        unpack_signs(torch.zeros(2, dtype=torch.int64), 3)
    with pytest.raises(ValueError):
        unpack_signs(torch.zeros(1, dtype=torch.int32), 33)

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bnn_lab.kernels import BACKENDS, available_backends, binary_matmul, pack_signs, resolve_backend
from bnn_lab.kernels.registry import has_numba
from tests.kernels.helpers import MATMUL_SHAPES, matmul_ref

CPU_BACKENDS = ["torch", "auto"] + (["cpu"] if has_numba() else [])


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("m,n,k", MATMUL_SHAPES)
def test_matches_float_reference(backend, m, n, k):
    gen = torch.Generator().manual_seed(m * 1000 + n * 10 + k)
    a = torch.randn(m, k, generator=gen)
    b = torch.randn(n, k, generator=gen)
    out = binary_matmul(pack_signs(a), pack_signs(b), k, backend=backend)
    assert out.dtype == torch.int32 and out.shape == (m, n)
    assert torch.equal(out, matmul_ref(a, b))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_zero_rows_count_as_plus_one(backend):
    k = 70
    b = torch.randn(6, k)
    a = torch.stack([torch.zeros(k), torch.full((k,), -0.0), -torch.ones(k)])
    out = binary_matmul(pack_signs(a), pack_signs(b), k, backend=backend)
    sb = torch.where(b >= 0, 1, -1).sum(dim=1).to(torch.int32)
    assert torch.equal(out[0], sb)  # 0.0 -> +1
    assert torch.equal(out[1], sb)  # -0.0 -> +1
    assert torch.equal(out[2], -sb)


@pytest.mark.skipif(not has_numba(), reason="numba not installed")
def test_cpu_backend_on_large_random_matrix_matches_torch_backend():
    a = torch.randint(-(2**31), 2**31 - 1, (37, 144), dtype=torch.int32)
    b = torch.randint(-(2**31), 2**31 - 1, (29, 144), dtype=torch.int32)
    k = 144 * 32
    assert torch.equal(binary_matmul(a, b, k, "cpu"), binary_matmul(a, b, k, "torch"))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_views_with_storage_offset(backend):
    # a contiguous view that starts 4 bytes into its storage (not 8-byte aligned)
    x = torch.randint(-(2**31), 2**31 - 1, (9, 4), dtype=torch.int32).view(-1)[1:33].view(8, 4)
    assert x.is_contiguous() and x.storage_offset() == 1
    signs = torch.stack([torch.stack([(x[i] >> j) & 1 for j in range(32)], dim=-1).reshape(-1) for i in range(8)])
    ref = ((signs * 2 - 1).float() @ (signs * 2 - 1).float().T).to(torch.int32)
    assert torch.equal(binary_matmul(x, x, 128, backend), ref)


def test_unknown_backend_lists_valid_names():
    bits = pack_signs(torch.randn(2, 8))
    with pytest.raises(ValueError) as err:
        binary_matmul(bits, bits, 8, backend="nope")
    msg = str(err.value)
    assert "nope" in msg
    for name in ["auto", "torch", "cpu", "triton"]:
        assert repr(name) in msg
    assert set(available_backends()) == {"auto", *BACKENDS}


def test_auto_resolution():
    assert resolve_backend("auto", torch.device("cpu")) == ("cpu" if has_numba() else "torch")
    assert resolve_backend("torch", torch.device("cpu")) == "torch"


def test_operand_validation():
    a = pack_signs(torch.randn(2, 64))
    with pytest.raises(TypeError):
        binary_matmul(a.to(torch.int64), a, 64)
    with pytest.raises(ValueError):
        binary_matmul(a, pack_signs(torch.randn(2, 100)), 64)  # word counts differ
    with pytest.raises(ValueError):
        binary_matmul(a, a, 65)  # K larger than the words hold


@pytest.mark.skipif(not has_numba() or (os.cpu_count() or 1) < 2, reason="needs numba and 2+ cores")
def test_cpu_backend_keeps_torch_thread_count():
    # numba's OpenMP layer used to reset torch's thread count when it started its threads;
    # a fresh process, because that happens once per process.
    code = (
        "import torch; torch.set_num_threads(1)\n"
        "from bnn_lab.kernels import binary_matmul, pack_signs\n"
        "a = pack_signs(torch.randn(8, 64)); binary_matmul(a, a, 64, 'cpu')\n"
        "print(torch.get_num_threads())\n"
    )
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "1"

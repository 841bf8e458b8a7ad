"""Triton backend.

The kernels need a GPU or the Triton interpreter, and the interpreter needs
``TRITON_INTERPRET=1`` set before triton is first imported, which a shared pytest
process cannot promise. So ``test_interpreter_in_subprocess`` re-runs this file in a
fresh process with the variable set, where the device tests below run on CPU tensors
(small shapes: the interpreter is slow). On a CUDA machine they also run in-process.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("triton")

from bnn_lab.kernels import binary_conv2d, binary_matmul, pack_conv2d_weight, pack_signs  # noqa: E402
from bnn_lab.kernels.backends import triton_gpu  # noqa: E402
from tests.kernels.helpers import conv_ref, matmul_ref  # noqa: E402

INTERPRETER = triton_gpu.interpreter_mode()
DEVICE = "cpu" if INTERPRETER else ("cuda" if torch.cuda.is_available() else None)
needs_device = pytest.mark.skipif(
    DEVICE is None, reason="no CUDA and triton not in interpreter mode (see test_interpreter_in_subprocess)"
)
N_DEVICE_TESTS = 4 + 3 * 8  # keep in sync: asserted by the subprocess test

SHAPES = [(1, 1, 1), (1, 5, 31), (3, 4, 33), (7, 3, 100), (2, 9, 64), (18, 17, 70), (20, 3, 1000), (1, 2, 4608)]
KERNELS = {
    "popcount": triton_gpu.binary_matmul_triton_popcount,
    "dot": triton_gpu.binary_matmul_triton_dot,
    "backend": lambda a, b, k: binary_matmul(a, b, k, backend="triton"),
}


@needs_device
@pytest.mark.parametrize("kernel", list(KERNELS))
@pytest.mark.parametrize("m,n,k", SHAPES)
def test_kernels_match_float_reference(kernel, m, n, k):
    gen = torch.Generator().manual_seed(m * 7919 + n * 31 + k)
    a = torch.randn(m, k, generator=gen)
    b = torch.randn(n, k, generator=gen)
    out = KERNELS[kernel](pack_signs(a).to(DEVICE), pack_signs(b).to(DEVICE), k)
    assert out.dtype == torch.int32 and out.device.type == DEVICE
    assert torch.equal(out.cpu(), matmul_ref(a, b))


@needs_device
def test_zero_and_negative_zero_rows():
    k = 45
    b = torch.randn(3, k)
    a = torch.stack([torch.zeros(k), torch.full((k,), -0.0)])
    sb = torch.where(b >= 0, 1, -1).sum(dim=1).to(torch.int32)
    for fn in (triton_gpu.binary_matmul_triton_popcount, triton_gpu.binary_matmul_triton_dot):
        out = fn(pack_signs(a).to(DEVICE), pack_signs(b).to(DEVICE), k).cpu()
        assert torch.equal(out, torch.stack([sb, sb]))


@needs_device
def test_shape_switch_uses_dot_kernel_for_large_m(monkeypatch):
    calls = []
    monkeypatch.setattr(triton_gpu, "binary_matmul_triton_dot", lambda *a: calls.append("dot") or a[0][:, :0])
    monkeypatch.setattr(triton_gpu, "binary_matmul_triton_popcount", lambda *a: calls.append("pop") or a[0][:, :0])
    bits = pack_signs(torch.randn(triton_gpu.POPCOUNT_MAX_M + 1, 8)).to(DEVICE)
    triton_gpu.binary_matmul_triton(bits[:1], bits, 8)
    triton_gpu.binary_matmul_triton(bits, bits, 8)
    assert calls == ["pop", "dot"]


@needs_device
def test_conv_with_triton_matmul():
    x = torch.randn(1, 6, 5, 5)
    wt = torch.randn(3, 6, 3, 3)
    out = binary_conv2d(x.to(DEVICE), pack_conv2d_weight(wt.to(DEVICE)), padding=1, stride=2, backend="triton")
    assert torch.equal(out.cpu(), conv_ref(x, wt, padding=1, stride=2))


@needs_device
def test_empty_operand():
    a = torch.zeros(0, 2, dtype=torch.int32, device=DEVICE)
    b = pack_signs(torch.randn(3, 40)).to(DEVICE)
    assert binary_matmul(a, b, 40, backend="triton").shape == (0, 3)


@pytest.mark.skipif(INTERPRETER, reason="already in interpreter mode")
def test_cpu_tensors_without_interpreter_raise_clear_error():
    bits = pack_signs(torch.randn(2, 40))
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        binary_matmul(bits, bits, 40, backend="triton")


@pytest.mark.skipif(INTERPRETER, reason="this is the subprocess")
def test_interpreter_in_subprocess():
    root = Path(__file__).resolve().parents[2]
    pythonpath = os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=pythonpath)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(Path(__file__).resolve())],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    passed = re.search(r"(\d+) passed", proc.stdout)
    assert passed is not None and int(passed.group(1)) == N_DEVICE_TESTS, proc.stdout[-2000:]

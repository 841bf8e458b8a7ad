"""The kernels' threading layer (chosen once per process) and the inference graph's float layers on
the calling thread. Each layer check runs in a fresh process: numba picks its layer once."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bnn_lab.kernels import thread_pools
from bnn_lab.kernels.registry import has_numba

ROOT = Path(__file__).resolve().parents[2]
needs_numba = pytest.mark.skipif(not has_numba(), reason="needs numba")

_USE_KERNELS = (
    "import torch\n"
    "from bnn_lab.kernels import binary_matmul, pack_signs, thread_pools\n"
    "a = pack_signs(torch.randn(8, 64)); binary_matmul(a, a, 64, 'cpu')\n"
    "import numba; print(numba.threading_layer(), thread_pools.layer())\n"
)


def _run(env_value: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in (thread_pools.ENV, "NUMBA_THREADING_LAYER")}
    if env_value is not None:
        env[thread_pools.ENV] = env_value
    return subprocess.run(
        [sys.executable, "-c", _USE_KERNELS], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
    )


@needs_numba
def test_tbb_is_the_default_where_installed_and_omp_can_be_asked_for():
    default = _run(None)
    assert default.returncode == 0, default.stderr[-2000:]
    expected = "tbb" if thread_pools._tbb_library() is not None else "omp"
    assert default.stdout.split() == [expected, expected]
    omp = _run("omp")
    assert omp.returncode == 0, omp.stderr[-2000:]
    assert omp.stdout.split() == ["omp", "omp"]


@needs_numba
def test_an_unknown_layer_lists_the_valid_ones():
    proc = _run("openmp")
    assert proc.returncode != 0
    assert "BNN_LAB_THREADING='openmp' is not a threading layer; valid: tbb, omp" in proc.stderr


@needs_numba
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2+ cores")
def test_graph_runs_float_layers_on_the_caller_and_kernels_on_all_threads():
    from bnn_lab.estimators import build as build_estimator  # noqa: F401 - registers the estimators
    from bnn_lab.export import pack_model
    from bnn_lab.export.graph import build_inference_graph
    from bnn_lab.kernels.backends import numba_cpu
    from bnn_lab.models import create
    from bnn_lab.surgery import binarize

    torch.manual_seed(0)
    model = create("resnet20", 1, 10, 16)
    binarize(model, "ste", {})
    packed, _ = pack_model(model.eval(), backend="cpu")
    graph, _ = build_inference_graph(packed)
    seen = {}
    stem = next(m for m in graph.modules() if isinstance(m, torch.nn.Conv2d))
    stem.register_forward_hook(lambda *_: seen.update(torch=torch.get_num_threads(), kernels=numba_cpu._sync_threads()))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        x = torch.randn(2, 1, 16, 16)
        with torch.no_grad():
            out = graph(x)
        assert torch.get_num_threads() == 2  # restored after the forward
        import numba

        kernels = min(2, numba.config.NUMBA_NUM_THREADS)  # pytest-xdist workers share the cores
        if thread_pools.layer() == "tbb":
            assert seen == {"torch": 1, "kernels": kernels}
        else:
            assert seen == {"torch": 2, "kernels": kernels}
        with torch.no_grad():
            assert torch.equal(out.argmax(1), packed(x).argmax(1))
        with pytest.raises(RuntimeError), torch.no_grad():
            graph(torch.randn(2, 3, 16, 16))  # wrong channels: the forward raises ...
        assert torch.get_num_threads() == 2  # ... and torch's threads are given back all the same
    finally:
        torch.set_num_threads(before)

"""LCR (``loss=[lcr]``): retention matrices and their spectral norms against numpy's SVD and
eigvalsh, the pair weights of the loss by hand, gradcheck of the power-iteration spectral
norm, and one epoch on the digits with a full-precision teacher through the ``bnn-lab`` path."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from bnn_lab.errors import ConfigError
from bnn_lab.losses import build_terms, lcr_loss, retention_matrix, spectral_norm
from bnn_lab.models import create


def features(seed: int, n: int = 3, c: int = 4, hw: int = 8) -> list[torch.Tensor]:
    """Three block outputs in float64: hw -> hw/2 (pooled) -> hw/2, with positive means like
    ReLU blocks."""
    g = torch.Generator().manual_seed(seed)
    h = hw // 2
    return [
        torch.randn(n, c, hw, hw, generator=g, dtype=torch.float64) + 0.5,
        torch.randn(n, c + 2, h, h, generator=g, dtype=torch.float64) + 0.3,
        torch.randn(n, c + 1, h, h, generator=g, dtype=torch.float64),
    ]


def numpy_rm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """pool(A) B^T / (H W) per sample; A pooled by averaging 2x2 cells when it is twice B's size."""
    n, c, h, w = a.shape
    hb, wb = b.shape[-2:]
    if (h, w) != (hb, wb):
        a = a.reshape(n, c, hb, h // hb, wb, w // wb).mean(axis=(3, 5))
    return np.einsum("nci,ndi->ncd", a.reshape(n, c, -1), b.reshape(n, b.shape[1], -1)) / (hb * wb)


def numpy_sn(rm: np.ndarray) -> np.ndarray:
    return np.array([np.sqrt(np.linalg.eigvalsh(m @ m.T).max()) for m in rm])


def test_retention_matrix_and_spectral_norm_match_numpy():
    f = features(0)
    for a, b in zip(f, f[1:]):
        rm = retention_matrix(a, b)
        expected = numpy_rm(a.numpy(), b.numpy())
        np.testing.assert_allclose(rm.numpy(), expected, rtol=1e-12, atol=1e-12)
        svd = np.linalg.svd(expected, compute_uv=False)[:, 0]
        np.testing.assert_allclose(numpy_sn(expected), svd, rtol=1e-10)
        np.testing.assert_allclose(spectral_norm(rm, 0).numpy(), svd, rtol=1e-10)  # exact
        np.testing.assert_allclose(spectral_norm(rm, 500).numpy(), svd, rtol=1e-8)  # converged
        assert not np.allclose(spectral_norm(rm, 1).numpy(), svd, rtol=1e-8)  # one step is not


def test_lcr_weights_the_deepest_pair_most():
    s, t = features(0), features(1)
    sn = lambda f: [numpy_sn(numpy_rm(a.numpy(), b.numpy())) for a, b in zip(f, f[1:])]  # noqa: E731
    ds = [((x - y) ** 2).mean() for x, y in zip(sn(s), sn(t))]
    assert lcr_loss(s, t, iterations=0).item() == pytest.approx(0.5 * ds[0] + 1.0 * ds[1], rel=1e-10)
    assert lcr_loss(s, t, iterations=500).item() == pytest.approx(0.5 * ds[0] + 1.0 * ds[1], rel=1e-7)
    assert lcr_loss(t, t).item() == 0.0


def test_power_iteration_gradient_is_the_spectral_norm_gradient():
    """gradcheck perturbs the matrix, which moves the singular vectors too: the detached
    vectors give the right gradient only because they have converged."""
    m = (torch.randn(2, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) + 0.5).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: spectral_norm(x, 100), (m,))
    s, t = features(0, n=2, c=2, hw=4), features(1, n=2, c=2, hw=4)
    s = [a.requires_grad_() for a in s]
    assert torch.autograd.gradcheck(lambda *f: lcr_loss(list(f), t, iterations=0), tuple(s))
    t = [a.requires_grad_() for a in t]
    lcr_loss(s, t).backward()
    assert all(a.grad is None for a in t)


def test_lcr_reads_consecutive_blocks_and_refuses_other_shapes():
    term = build_terms({"lcr": 1.0})[0]
    assert term.feature_layers(create("resnet20", 1, 10, 8)) == [f"layer{i}.{j}" for i in (1, 2, 3) for j in range(3)]
    with pytest.raises(ConfigError, match="2 or more blocks"):
        build_terms({"lcr": {"weight": 1.0, "layers": ["layer1.0"]}})[0].feature_layers(create("resnet20", 1, 10, 8))
    with pytest.raises(ConfigError, match=r"\(N, C, H, W\)"):
        lcr_loss([torch.ones(2, 5, 3), torch.ones(2, 5, 3)], [torch.ones(2, 5, 3), torch.ones(2, 5, 3)])
    with pytest.raises(ConfigError, match="iterations"):
        build_terms({"lcr": {"weight": 1.0, "iterations": -1}})


def test_lcr_trains_one_epoch_on_digits_with_a_full_precision_teacher(run_cli, tmp_path):
    proc = run_cli(
        "data=digits",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
        "logger=csv",
        "optimizer.lr=0.01",
        "scheduler=none",
        "distill=kd",
        "loss.kd.weight=0",
        f"distill.teacher.cache={tmp_path / 'teachers'}",
        "loss=[lcr]",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((proc.run_dir / "metrics.json").read_text())
    assert metrics["test/acc"] > 0.3  # 10 classes: chance is 0.1
    rows = list(csv.DictReader(next(proc.run_dir.rglob("csv/metrics.csv")).open()))
    lcr = [float(r["train/lcr_epoch"]) for r in rows if r.get("train/lcr_epoch")]
    assert lcr and lcr[-1] > 0
    assert not any(k.startswith("train/kd") for k in rows[0])

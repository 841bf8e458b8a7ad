"""DIR-Net's two parts: IMB (``binarize.weight_norm=imb``) against a numpy computation of its
weights, scale and gradient, packed evaluation equal to float evaluation with the scale folded,
every estimator taking it; RBD (``loss=[rbd]``) against numpy and gradcheck; each trains one
epoch on the digits through the ``bnn-lab`` code path."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from bnn_lab import estimators
from bnn_lab.errors import ConfigError
from bnn_lab.export import pack_model
from bnn_lab.layers import build_weight_norm
from bnn_lab.layers.imb_weight_norm import imb_normalize, power_of_two_scale
from bnn_lab.losses import rbd_loss
from bnn_lab.surgery import binarize


def numpy_imb(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(w_hat, 2^round(log2 mean |w_hat|)) per output channel, in float64."""
    rows = w.reshape(w.shape[0], -1).astype(np.float64)
    w_hat = (rows - rows.mean(1, keepdims=True)) / rows.std(1, ddof=1, keepdims=True)
    return w_hat.reshape(w.shape), 2.0 ** np.round(np.log2(np.abs(w_hat).mean(1)))


def spiky_weight(out_ch: int, in_ch: int, k: int = 3, seed: int = 0) -> torch.Tensor:
    """Gaussian channels with an offset, and every third channel one spike on near zeros: its
    mean |w_hat| is about 2 / sqrt(K), so its power-of-two factor is below 1."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(out_ch, in_ch, k, k, generator=g) * 0.1 + 0.05
    for o in range(0, out_ch, 3):
        w[o] = torch.randn(in_ch, k, k, generator=g) * 1e-3
        w[o, 0, 0, 0] = 1.0
    return w


def test_imb_weights_and_scale_match_numpy():
    w = spiky_weight(6, 8)
    layer = nn.Conv2d(8, 6, 3, bias=False)
    with torch.no_grad():
        layer.weight.copy_(w)
    net = nn.Sequential(layer)
    binarize(net, "ste", {"keep_first": False, "keep_last": False}, weight_norm="imb")
    conv = net[0]
    w_hat, factor = numpy_imb(w.numpy())
    np.testing.assert_allclose(conv.normalized_weight().detach().numpy(), w_hat, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(conv.weight_norm.packed_scale(conv.weight).numpy(), factor)
    assert set(factor[::3]) == {0.25} and set(np.delete(factor, np.s_[::3])) == {1.0}
    expected = np.where(w_hat >= 0, 1.0, -1.0) * factor[:, None, None, None]
    np.testing.assert_array_equal(conv.binary_weight().detach().numpy(), expected)
    # the signs are those of the balanced weights, not of the raw ones (all of them positive here)
    assert (w[1:3] > 0).float().mean() > 0.6 and (expected[1:3] < 0).mean() > 0.3


def test_power_of_two_factor_rounds_log2_of_the_mean_magnitude():
    means = torch.tensor([0.3, 0.8, 1.5, 3.0, 0.17])  # log2: -1.74, -0.32, 0.58, 1.58, -2.56
    w_hat = means[:, None] * torch.tensor([1.0, -1.0, 1.0, -1.0])
    assert power_of_two_scale(w_hat).tolist() == [0.25, 1.0, 2.0, 4.0, 0.125]


def test_imb_gradient_is_the_standardization_jacobian_times_the_scale():
    """With the identity estimator (gradient 1) dL/dw = J^T (G s): for y = (x - m) / sigma over K
    values, J^T g = (g - mean(g) - y sum(g y) / (K - 1)) / sigma (sample std)."""
    w = spiky_weight(4, 3).double()
    layer = nn.Conv2d(3, 4, 3, bias=False).double()
    with torch.no_grad():
        layer.weight.copy_(w)
    net = nn.Sequential(layer)
    binarize(net, "identity", {"keep_first": False, "keep_last": False}, weight_norm="imb")
    g = torch.randn(4, 3, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    (net[0].binary_weight() * g).sum().backward()
    rows, grows = w.reshape(4, -1).numpy(), g.reshape(4, -1).numpy()
    w_hat, factor = numpy_imb(w.numpy())
    y, sigma, k = w_hat.reshape(4, -1), rows.std(1, ddof=1, keepdims=True), rows.shape[1]
    gs = grows * factor[:, None]
    expected = (gs - gs.mean(1, keepdims=True) - y * (gs * y).sum(1, keepdims=True) / (k - 1)) / sigma
    np.testing.assert_allclose(net[0].weight.grad.reshape(4, -1).numpy(), expected, rtol=1e-8, atol=1e-8)


def test_unknown_weight_norm_lists_the_valid_ones():
    with pytest.raises(
        ConfigError, match="unknown binarize.weight_norm 'libra'; valid weight normalizations: imb, none"
    ):
        build_weight_norm("libra", nn.Conv2d(2, 2, 1))


def imb_net(scale: str) -> nn.Module:
    """Full-precision stem, two binary convs (spiky weights: factors of 1/4 and 1), BN,
    full-precision classifier; BN statistics from a few training batches."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 12, 3, padding=1),
        nn.BatchNorm2d(12),
        nn.Hardtanh(),
        nn.Conv2d(12, 12, 3, padding=1, bias=False),
        nn.BatchNorm2d(12),
        nn.Hardtanh(),
        nn.Conv2d(12, 12, 3, padding=1, bias=True),
        nn.BatchNorm2d(12),
        nn.Hardtanh(),
        nn.Flatten(),
        nn.Linear(12 * 8 * 8, 10),
    )
    with torch.no_grad():
        net[3].weight.copy_(spiky_weight(12, 12, seed=1))
        net[6].weight.copy_(spiky_weight(12, 12, seed=2))
    binarize(net, "ste", {"keep_first": True, "keep_last": True}, scale=scale, weight_norm="imb")
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(16, 3, 8, 8))
    return net.eval()


@pytest.mark.parametrize("scale", ["none", "xnor"])
def test_packed_imb_layers_equal_the_float_layers(scale):
    net = imb_net(scale)
    factors = [net[i].weight_norm.packed_scale(net[i].weight) for i in (3, 6)]
    assert all((f == 0.25).any() and (f == 1).any() for f in factors)  # the fold is exercised
    packed, report = pack_model(net, backend="cpu")
    assert report.packed == ["3", "6"] and not report.kept_float
    x = torch.randn(64, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref, out = net(x), packed(x)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert torch.equal(out.argmax(1), ref.argmax(1))


@pytest.mark.parametrize("name", estimators.names())
def test_imb_works_with_every_estimator(name):
    """Forward and backward with the normalization in front of each estimator; where the
    estimator outputs +-1 the binary weight is sign(w_hat) times the factor."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(4, 8, 3, bias=False),
        nn.BatchNorm2d(8),
        nn.Hardtanh(),
        nn.Conv2d(8, 8, 3, padding=1, bias=False),
        nn.Flatten(),
        nn.Linear(8 * 6 * 6, 10),
    )
    binarize(net, name, {"keep_first": False, "keep_last": True}, weight_norm="imb")
    net(torch.randn(4, 4, 8, 8)).sum().backward()
    for i in (0, 3):
        conv = net[i]
        assert conv.weight.grad is not None and torch.isfinite(conv.weight.grad).all()
        assert conv.weight.grad.abs().sum() > 0
        net.eval()
        with torch.no_grad():
            wb = conv.binary_weight()
            factor = conv.weight_norm.packed_scale(conv.weight).view(-1, 1, 1, 1)
            if bool(((wb / factor).abs() == 1).all()):
                w_hat = imb_normalize(conv.weight)
                if name == "biper":  # its +-1 is the square wave sign(sin(omega w_hat))
                    w_hat = torch.sin(w_hat * conv.weight_estimator.omega)
                assert torch.equal(wb / factor, torch.where(w_hat >= 0, 1.0, -1.0))
        net.train()


# -- RBD --------------------------------------------------------------------------------------
def numpy_rbd(student: list[np.ndarray], teacher: list[np.ndarray]) -> float:
    total = 0.0
    for s, t in zip(student, teacher):
        s, t = s.reshape(len(s), -1), t.reshape(len(t), -1)
        s = s / np.linalg.norm(s, axis=1, keepdims=True)
        t = t / np.linalg.norm(t, axis=1, keepdims=True)
        total += ((s - t) ** 2).sum(1).mean()
    return total / len(student)


def block_outputs(seed: int, dtype=torch.float32) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(3, 4, 6, 6, generator=g, dtype=dtype), torch.randn(3, 8, 3, 3, generator=g, dtype=dtype)]


def test_rbd_matches_numpy_and_is_two_minus_two_cosines():
    s, t = block_outputs(0), block_outputs(1)
    value = rbd_loss(s, t)
    assert value.item() == pytest.approx(numpy_rbd([a.numpy() for a in s], [a.numpy() for a in t]), rel=1e-6)
    cos = [torch.nn.functional.cosine_similarity(a.flatten(1), b.flatten(1)).mean() for a, b in zip(s, t)]
    assert value.item() == pytest.approx(float(sum(2 - 2 * c for c in cos) / 2), rel=1e-5)
    scaled = [a * torch.tensor([0.1, 3.0, 50.0]).view(3, 1, 1, 1) for a in s]
    assert rbd_loss(scaled, t).item() == pytest.approx(value.item(), rel=1e-5)  # per-sample size ignored
    assert rbd_loss(t, t).item() == pytest.approx(0.0, abs=1e-6)


def test_rbd_gradcheck_and_teacher_gets_no_gradient():
    s = [a.requires_grad_() for a in block_outputs(0, torch.float64)]
    t = [a.requires_grad_() for a in block_outputs(1, torch.float64)]
    assert torch.autograd.gradcheck(lambda a, b: rbd_loss([a, b], t), tuple(s))
    rbd_loss(s, t).backward()
    assert all(a.grad is None for a in t)


# -- through the command line -----------------------------------------------------------------
TINY = [
    "data=digits",
    "trainer.max_epochs=1",
    "logger=none",
    "trainer.enable_progress_bar=false",
    "optimizer.lr=0.01",
    "scheduler=none",
]


def test_imb_trains_one_epoch_on_digits_and_packs_exactly(run_cli):
    """The identity estimator: the clipped STE passes no gradient to the standardized weights
    beyond |w_hat| = 1 (about a third of them), which slows a one-epoch run (0.31 against 0.54)."""
    proc = run_cli(*TINY, "binarize.weight_norm=imb", "estimator=identity")
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((proc.run_dir / "metrics.json").read_text())
    assert metrics["test/acc"] > 0.4  # 10 classes: chance is 0.1
    assert metrics["packed/layers"] == 20  # every binary conv of the ResNet-20
    assert metrics["packed/test_acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)


def test_rbd_trains_one_epoch_on_digits_with_a_teacher(run_cli, tmp_path):
    proc = run_cli(
        *TINY,
        "distill=kd",
        "loss.kd.weight=0",
        f"distill.teacher.cache={tmp_path / 'teachers'}",
        "loss=[rbd]",
        "logger=csv",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((proc.run_dir / "metrics.json").read_text())
    assert metrics["test/acc"] > 0.3
    import csv

    rows = list(csv.DictReader(next(proc.run_dir.rglob("csv/metrics.csv")).open()))
    rbd = [float(r["train/rbd_epoch"]) for r in rows if r.get("train/rbd_epoch")]
    assert rbd and 0 < rbd[-1] < 4  # 2 (1 - cos) averaged over blocks
    assert not any(k.startswith("train/kd") for k in rows[0])

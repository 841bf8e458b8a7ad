"""Channel replication (``binarize.replicate``, RepTran): counts on ResNet-20, the rules
checked against hand computations, clear refusals, and a digits run that trains and packs."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from bnn_lab.errors import ConfigError
from bnn_lab.models import create
from bnn_lab.summary import summarize
from bnn_lab.surgery import binarize


def bn_params(model: nn.Module) -> int:
    return sum(p.numel() for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters())


@pytest.mark.parametrize("beta", [2, 4])
def test_resnet20_keeps_binary_weights_and_macs_and_multiplies_bn_by_beta(beta):
    torch.manual_seed(0)
    plain, rep = create("resnet20", 1, 10, 28), create("resnet20", 1, 10, 28)
    binarize(plain, "ste", {"activation": "hardtanh"})
    report = binarize(rep, "ste", {"activation": "hardtanh"}, replicate=beta)
    a, b = summarize(plain, (1, 28, 28)).totals, summarize(rep, (1, 28, 28)).totals
    assert b["binary_params"] == a["binary_params"] == 269824  # 18 3x3 convs + 2 1x1 shortcuts
    assert b["binary_macs"] == a["binary_macs"]
    assert bn_params(rep) == beta * bn_params(plain) == beta * 2 * 16 * 7 + beta * 2 * (32 * 7 + 64 * 7)
    assert len(report.binarized) == 20
    x = torch.randn(3, 1, 28, 28)
    assert rep(x).shape == plain(x).shape == (3, 10)
    assert b["params"] - a["params"] == (beta - 1) * bn_params(plain)  # nothing else grows


def test_a_binary_unit_and_the_fold_match_a_hand_computation():
    """conv (image) -> BN -> binary conv -> BN -> pool -> classifier, beta = 2, in numpy."""
    torch.manual_seed(1)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, bias=False),
        nn.BatchNorm2d(4),
        nn.Conv2d(4, 4, 3, padding=1, bias=False),
        nn.BatchNorm2d(4),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )
    report = binarize(net, "ste", {"keep_first": True, "keep_last": True}, replicate=2)
    assert report.binarized == ["2.layer"] and set(report.kept) == {"0.layer", "6.layer"}
    net.eval()
    with torch.no_grad():  # every copy its own affine
        for bn in (net[1], net[3]):
            bn.weight.copy_(torch.rand(8) + 0.5)
            bn.bias.copy_(torch.randn(8))
    x = torch.randn(2, 1, 5, 5)
    got = net(x).detach().numpy()

    def bn(v, m):
        w, b = m.weight.detach().numpy(), m.bias.detach().numpy()
        return v * (w / np.sqrt(1 + m.eps))[None, :, None, None] + b[None, :, None, None]

    def conv(v, w):  # 3x3, padding 1, naive
        n, c, h, wd = v.shape
        p = np.pad(v, ((0, 0), (0, 0), (1, 1), (1, 1)))
        out = np.zeros((n, w.shape[0], h, wd))
        for i in range(h):
            for j in range(wd):
                out[:, :, i, j] = np.einsum("nckl,ockl->no", p[:, :, i : i + 3, j : j + 3], w)
        return out

    y = conv(x.numpy(), net[0].layer.weight.detach().numpy())  # 4 channels
    y = bn(np.concatenate([y, y], 1), net[1])  # repeated x2, 8 BN copies
    wb = np.where(net[2].layer.weight.detach().numpy() >= 0, 1.0, -1.0)  # 8 -> 2 binary
    assert wb.shape == (2, 8, 3, 3)
    z = conv(np.where(y >= 0, 1.0, -1.0), wb)
    z = bn(np.concatenate([z] * 4, 1), net[3])  # repeated x4 = 8 channels
    pooled = z.mean((2, 3))
    folded = (pooled[:, :4] + pooled[:, 4:]) / 2  # classifier: mean of the copies
    fc = net[6].layer
    want = folded @ fc.weight.detach().numpy().T + fc.bias.detach().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_replicate_one_changes_nothing():
    torch.manual_seed(2)
    a = create("resnet20", 1, 10, 28)
    b = create("resnet20", 1, 10, 28)
    b.load_state_dict(a.state_dict())
    binarize(a, "ste", {"activation": "hardtanh"})
    binarize(b, "ste", {"activation": "hardtanh"}, replicate=1)
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(a.eval()(x), b.eval()(x))


def test_refusals_name_the_layer():
    with pytest.raises(ConfigError, match=r"3 output channels, not a multiple of 2"):
        binarize(
            nn.Sequential(nn.Conv2d(1, 4, 3), nn.Conv2d(4, 3, 3), nn.Flatten(), nn.Linear(3, 2)),
            "ste",
            None,
            replicate=2,
        )
    with pytest.raises(ConfigError, match=r"1 is a LayerNorm"):
        binarize(
            nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 4), nn.Linear(4, 2)), "ste", None, replicate=2
        )


@pytest.mark.slow
def test_replicated_resnet20_trains_on_digits_and_packs_exactly(run_cli):
    proc = run_cli(
        "data=digits",
        "binarize.replicate=2",
        "trainer.max_epochs=1",
        "logger=none",
        "trainer.enable_progress_bar=false",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((proc.run_dir / "metrics.json").read_text())
    assert metrics["test/acc"] > 0.2  # 10 classes: chance is 0.1 (0.29 in one epoch, seed 42)
    assert metrics["packed/layers"] == 20
    assert metrics["packed/test_acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)
    assert metrics["summary"]["binary_params"] == 269824

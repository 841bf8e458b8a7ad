"""Export to Larq Compute Engine: LCE's bit layout by hand, layers without an LCE form named, and
the file run by LCE's own interpreter predicting what bnn-lab's packed model predicts."""

import numpy as np
import pytest
import torch
from lce_peer import lce_python, run_lce
from required_tools import unavailable
from torch import nn
from trained_digits import digits_splits, logits, trained_digits_model

from bnn_lab.export import pack_model
from bnn_lab.export.lce import LceUnsupported, lce_bits, to_lce
from bnn_lab.models import create
from bnn_lab.surgery import binarize


def test_lce_bits_set_the_negative_channels_lsb_first():
    signs = torch.ones(2, 33)
    signs[0, [0, 5, 31]] = -1  # word 0: bits 0, 5, 31
    signs[0, 32] = -1  # word 1: bit 0
    signs[1, 1] = -1
    got = lce_bits(signs)
    assert got.dtype == np.int32 and got.shape == (2, 2)
    assert got[0, 0] == np.array(1 | 1 << 5 | 1 << 31, dtype=np.uint32).view(np.int32)
    assert got[0, 1] == 1 and got[1, 0] == 2 and got[1, 1] == 0  # bits past channel 33 stay 0


def _with_statistics(model, shape):
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, *shape))
    return model.eval()


def test_a_layer_without_an_lce_form_is_named():
    model = create("resnet20", 1, 10, 8)
    binarize(model, "ste", {"activation": "hardtanh"}, scale="gating")
    packed, _ = pack_model(_with_statistics(model, (1, 8, 8)))
    with pytest.raises(LceUnsupported, match=r"layer layer1\.0\.conv1: a gating scale depends on the input"):
        to_lce(packed, (1, 8, 8))
    odd = nn.Sequential(nn.Conv2d(1, 4, 3), nn.GELU())
    with pytest.raises(LceUnsupported, match=r"layer 1 \(GELU\) has no LCE/TFLite form here; exported: .*Conv2d"):
        to_lce(odd, (1, 8, 8))


@pytest.fixture(scope="module")
def lce():
    python, why = lce_python()
    if python is None:
        unavailable(why)
    return python


@pytest.mark.parametrize(
    "arch,size,chans,estimator,scale,activation",
    [
        ("resnet20", 8, 1, "rsign", "learned", "rprelu"),  # thresholds, RPReLU, SAME and 2x2 maps
        ("resnet18", 32, 3, "ste", "xnor", "hardtanh"),  # stride 2 at even sizes: padded by hand
        ("bireal18", 32, 3, "ste", "learned", "prelu"),  # average-pooled shortcuts
        ("vgg_small", 32, 3, "ste", "none", "hardtanh"),  # max pooling, flatten of 4x4 maps
    ],
)
def test_lce_runs_the_architectures_as_bnn_lab_does(lce, tmp_path, arch, size, chans, estimator, scale, activation):
    torch.manual_seed(0)
    model = create(arch, chans, 10, size)
    binarize(model, estimator, {"activation": activation}, scale=scale)
    packed, _ = pack_model(_with_statistics(model, (chans, size, size)))
    x = torch.randn(16, chans, size, size)
    with torch.no_grad():
        ref = packed(x).numpy()
    got = run_lce(lce, to_lce(packed, (chans, size, size)), x.permute(0, 2, 3, 1).numpy(), tmp_path)
    # LCE rounds its output transform differently (x * -m + (b + K m)): a value within rounding of a
    # sign threshold can binarize the other way in a random network; most images agree to rounding
    close = np.abs(got - ref).max(axis=1) < 1e-3 * np.maximum(np.abs(ref).max(axis=1), 1.0)
    assert close.mean() >= 0.75, np.abs(got - ref).max(axis=1)
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.75


def test_lce_predicts_as_the_packed_model_on_the_whole_digits_test_split(lce, tmp_path):
    model = trained_digits_model("ste", "learned", "hardtanh", 2)
    packed, _ = pack_model(model)
    _, _, x, y = digits_splits()
    ref = logits(packed, x)
    assert (ref.argmax(1) == y).float().mean() > 0.5  # trained
    got = run_lce(lce, to_lce(packed, (1, 8, 8)), x.permute(0, 2, 3, 1).numpy(), tmp_path)
    assert np.array_equal(got.argmax(1), ref.argmax(1).numpy())
    np.testing.assert_allclose(got, ref.numpy(), atol=1e-3, rtol=1e-3)


def test_lce_runs_quicknet_with_its_float_stem_and_blur_pools(lce, tmp_path):
    from bnn_lab.bench.model import models_from_arch

    packed, _, shape, info = models_from_arch("quicknet", "ste", 3, 32, 10, "auto")  # the arch's own policy
    assert info["kept_float"] == 0  # the stem's depthwise conv is float by the preset, not refused by the packer
    x = torch.randn(8, *shape)
    with torch.no_grad():
        ref = packed(x).numpy()
    got = run_lce(lce, to_lce(packed, shape), x.permute(0, 2, 3, 1).numpy(), tmp_path)
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)  # depthwise stem, -inf padding, blur pools


def test_the_model_benchmark_times_lce_beside_the_packed_graph(lce, capsys):
    import json

    from bnn_lab.bench.cli import main

    args = ["model", "--arch", "resnet20", "--size", "8", "--chans", "1", "--classes", "10", "--batch", "1"]
    args += ["--repeats", "3", "--rounds", "1", "--warmup", "1", "--baselines", "torch", "--lce-python", lce, "--json"]
    assert main(args) == 0
    res = json.loads(capsys.readouterr().out)
    lce_ms = [res["lce"][k]["ms"] for k in ("before", "after")]
    assert all(res["lce"][k]["p25_ms"] <= res["lce"][k]["ms"] <= res["lce"][k]["p75_ms"] for k in ("before", "after"))
    packed_ms = res["batches"]["1"]["ms"]["packed"]
    assert res["lce"]["lce_over_packed"] == pytest.approx(sum(lce_ms) / 2 / packed_ms, rel=1e-2, abs=1e-3)


def test_a_missing_tool_fails_where_every_tool_is_required(monkeypatch):
    from required_tools import ENV

    monkeypatch.setenv(ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="cannot run: no podman"):
        unavailable("no podman")
    monkeypatch.setenv(ENV, "0")
    with pytest.raises(pytest.skip.Exception, match="no podman"):
        unavailable("no podman")

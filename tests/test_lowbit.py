"""The low-bit neighbours of 1W1A: DoReFa k-bit activations and ternary weights, against
numpy formulas (forward and backward), their bits in the model summary, and the packed
export keeping them in float."""

import json

import numpy as np
import pytest
import torch
from binary_nets import small_binary_net

from bnn_lab import estimators
from bnn_lab.export import pack_model
from bnn_lab.summary import summarize


def test_dorefa_inputs_by_formula():
    x = torch.tensor([-0.5, 0.0, 0.1, 0.2, 0.5, 0.9, 1.0, 1.7], requires_grad=True)
    q = estimators.build("dorefa", bits=2, role="input")(x)
    n = 3
    expected = np.round(np.clip(x.detach().numpy(), 0, 1) * n) / n
    np.testing.assert_allclose(q.detach().numpy(), expected, rtol=0, atol=1e-7)
    assert sorted(set(np.round(expected * n).astype(int))) == [0, 1, 2, 3]  # the 2^2 levels, all used
    q.backward(torch.arange(1.0, 9.0))
    inside = (x.detach().numpy() >= 0) & (x.detach().numpy() <= 1)
    np.testing.assert_array_equal(x.grad.numpy(), np.arange(1.0, 9.0) * inside)


def test_dorefa_weights_are_signs_with_the_clipped_ste():
    w = torch.tensor([-1.5, -0.3, 0.0, 0.4, 1.2], requires_grad=True)
    b = estimators.build("dorefa", bits=2, role="weight")(w)
    np.testing.assert_array_equal(b.detach().numpy(), [-1, -1, 1, 1, 1])
    b.sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), [0, 1, 1, 1, 0])


def test_ternary_weights_by_formula():
    torch.manual_seed(0)
    w = (torch.randn(4, 3, 3, 3) * 0.8).requires_grad_()
    t = estimators.build("ternary", threshold=0.7, role="weight")(w)
    wn = w.detach().numpy()
    delta = 0.7 * np.abs(wn).reshape(4, -1).mean(1)[:, None, None, None]
    expected = np.sign(wn) * (np.abs(wn) > delta)
    np.testing.assert_array_equal(t.detach().numpy(), expected)
    assert 0 < (expected == 0).mean() < 1  # zeros and non-zeros both present
    g = torch.randn_like(w)
    t.backward(g)
    np.testing.assert_array_equal(w.grad.numpy(), g.numpy() * (np.abs(wn) <= 1))


def test_ternary_absolute_threshold():
    w = torch.tensor([[-0.06, -0.04, 0.0, 0.05, 0.3]])
    t = estimators.build("ternary", threshold=0.05, absolute=True, role="weight")(w)
    np.testing.assert_array_equal(t.numpy(), [[-1, 0, 0, 0, 1]])


@pytest.mark.parametrize("name, weight_bits, input_bits", [("ternary", 2, 1), ("dorefa", 1, 2), ("ste", 1, 1)])
def test_summary_counts_the_bits(name, weight_bits, input_bits):
    net = small_binary_net(name)  # binary convs 4->8 and 8->8 (3x3, no bias), FP classifier
    rows = {r.name: r for r in summarize(net, (4, 8, 8)).rows}
    conv = rows["3"]  # the second binary conv: 8*8*9 weights, BN before it in full precision
    assert (conv.weight_bits, conv.input_bits) == (weight_bits, input_bits)
    assert conv.memory_bytes == 8 * 8 * 9 * weight_bits / 8
    totals = summarize(net, (4, 8, 8)).totals
    binary_macs = sum(r.macs for r in rows.values() if r.type == "BinaryConv2d")
    assert totals["binary_macs"] == (binary_macs if (weight_bits, input_bits) == (1, 1) else 0)
    lowbit = sum(r.params for r in rows.values() if r.type == "BinaryConv2d") if weight_bits == 2 else 0
    assert totals["lowbit_params"] == lowbit


@pytest.mark.parametrize("name", ["ternary", "dorefa"])
def test_packed_export_keeps_low_bit_layers_in_float(name):
    net = small_binary_net(name).eval()
    packed, report = pack_model(net)
    assert not report.packed and len(report.kept_float) == 2
    why = {"ternary": "weights not +-1", "dorefa": "2-bit activations"}[name]
    assert all(why in reason for reason in report.kept_float.values()), report.kept_float
    x = torch.randn(5, 4, 8, 8)
    torch.testing.assert_close(packed(x), net(x), rtol=0, atol=0)


@pytest.mark.parametrize("name, extra", [("ternary", []), ("dorefa", ["binarize.policy.activation=identity"])])
def test_trains_two_epochs_on_digits_from_the_cli(run_cli, name, extra):
    # two epochs: after one, ternary sat at 0.29 on one CPU and above 0.3 on another
    proc = run_cli(
        "data=digits",
        f"estimator={name}",
        "trainer.max_epochs=2",
        "logger=none",
        "trainer.enable_progress_bar=false",
        *extra,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((proc.run_dir / "metrics.json").read_text())
    assert metrics["test/acc"] > 0.3  # 10 classes: chance is 0.1
    assert metrics["packed/layers"] == 0  # every low-bit layer stayed float

"""RBONN's scale (bnn_lab/layers/rbonn_scale.py) against a hand computation: the forward
pass, the gradients of w, alpha and u with the bilinear coupling, the same gradients as the
coupling written as a loss term, the recurrent step's channel mask, the packed form, u's
learning rate, and one epoch on digits through the ``bnn-lab`` code path."""

import json

import pytest
import torch
import torch.nn.functional as F

from bnn_lab.export import pack_model
from bnn_lab.layers.rbonn_scale import RBONNScale
from bnn_lab.models import create
from bnn_lab.optim import build_optimizer
from bnn_lab.surgery import binarize

ALPHA = [0.5, -0.1, 0.9, 0.3, 0.7]  # |alpha| ranks channels 1 < 3 < 0 < 4 < 2


def sign(t):
    return torch.where(t >= 0, 1.0, -1.0)


def rbonn_conv(lam=0.1):
    torch.manual_seed(0)
    layer = torch.nn.Sequential(torch.nn.Conv2d(3, 5, 3, padding=1, bias=False))
    binarize(
        layer, "ste", {"keep_first": False, "keep_last": False, "activation": None}, scale={"name": "rbonn", "lam": lam}
    )
    conv = layer[0]
    with torch.no_grad():
        conv.weight.mul_(3)  # some weights beyond the clip |w| <= 1: the estimator's gradient is 0 there
        conv.scale.alpha.copy_(torch.tensor(ALPHA))
        conv.scale.u.copy_(torch.tensor([0.2, 0.3, 0.4, 0.5, 0.6]))
        conv.scale.last_grad.copy_(torch.randn_like(conv.weight))
    return layer, conv


def test_the_recurrent_step_masks_the_channels_of_smallest_alpha():
    _, conv = rbonn_conv()
    # threshold 0.6: int(5 * 0.4) = 2 channels, those of the two smallest |alpha| (1 and 3);
    # indexing by argsort position instead ([1, 3, 0, 4, 2] < 2) would pick channels 0 and 2
    assert conv.scale.sparse_mask().tolist() == [0.0, 1.0, 0.0, 1.0, 0.0]


def test_forward_and_backward_by_hand():
    lam = 0.1
    layer, conv = rbonn_conv(lam)
    s = conv.scale
    x, r = torch.randn(2, 3, 6, 6), torch.randn(2, 5, 6, 6)
    w, g_prev, u = conv.weight.detach().clone(), s.last_grad.clone(), s.u.detach().clone()
    a = torch.tensor(ALPHA).abs()
    mask = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0]).view(-1, 1, 1, 1)

    out = layer(x)
    (out * r).sum().backward()

    w1 = w - u.view(-1, 1, 1, 1) * g_prev * mask  # the recurrent step
    b = sign(w1)
    wb = (b * a.view(-1, 1, 1, 1)).requires_grad_()
    out_hand = F.conv2d(sign(x), wb, padding=1)
    (out_hand * r).sum().backward()
    g = wb.grad  # the gradient at w_b
    torch.testing.assert_close(out, out_hand)

    res = w1 - a.view(-1, 1, 1, 1) * b
    grad_w = a.view(-1, 1, 1, 1) * g * (w1.abs() <= 1) + lam * res  # STE clips at |w| <= 1
    grad_alpha = torch.tensor(ALPHA).sign() * ((g * b).sum((1, 2, 3)) - lam * (res * b).sum((1, 2, 3)))
    grad_u = -(grad_w * g_prev * mask).sum((1, 2, 3))
    torch.testing.assert_close(conv.weight.grad, grad_w)
    torch.testing.assert_close(s.alpha.grad, grad_alpha)
    torch.testing.assert_close(s.u.grad, grad_u)
    assert s.u.grad[[0, 2, 4]].eq(0).all() and s.u.grad[[1, 3]].ne(0).all()
    torch.testing.assert_close(s.last_grad, grad_w)  # kept for the next step's recurrent step
    assert (lam * res).abs().max() > 1e-2  # the coupling is a visible part of what was compared


def test_the_coupling_is_the_gradient_of_a_loss_term():
    """The identity node's extra gradients equal those of lambda/2 ||w' - |alpha| sign(w')||^2
    (sign held constant) added to the loss of a network with plain output scaling."""
    lam = 0.1
    layer, conv = rbonn_conv(lam)
    s = conv.scale
    x, r = torch.randn(2, 3, 6, 6), torch.randn(2, 5, 6, 6)
    g_prev = s.last_grad.clone()
    (layer(x) * r).sum().backward()

    w = conv.weight.detach().clone().requires_grad_()
    alpha = s.alpha.detach().clone().requires_grad_()
    u = s.u.detach().clone().requires_grad_()
    w1 = w - u.view(-1, 1, 1, 1) * g_prev * s.sparse_mask().view(-1, 1, 1, 1)
    b = sign(w1).detach()
    ste_b = b + (w1 - w1.detach()) * (w1.detach().abs() <= 1)  # sign forward, clipped STE backward
    out = F.conv2d(sign(x), ste_b, padding=1) * alpha.abs().view(1, -1, 1, 1)
    loss = (out * r).sum() + lam / 2 * (w1 - alpha.abs().view(-1, 1, 1, 1) * b).pow(2).sum()
    loss.backward()
    torch.testing.assert_close(conv.weight.grad, w.grad)
    torch.testing.assert_close(s.alpha.grad, alpha.grad)
    torch.testing.assert_close(s.u.grad, u.grad)


def test_evaluation_binarizes_w_and_the_packed_form_is_abs_alpha():
    layer, conv = rbonn_conv()
    layer.eval()
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        ref = F.conv2d(sign(x), sign(conv.weight), padding=1) * torch.tensor(ALPHA).abs().view(1, -1, 1, 1)
        torch.testing.assert_close(layer(x), ref)  # no recurrent step in evaluation
    assert conv.scale.packed_scale(conv.weight).tolist() == torch.tensor(ALPHA).abs().tolist()
    packed, report = pack_model(layer, backend="cpu")
    assert report.packed == ["0"]
    with torch.no_grad():
        torch.testing.assert_close(packed(x), ref, atol=1e-5, rtol=1e-5)


def test_u_trains_at_a_tenth_of_the_learning_rate():
    model = create("resnet20", 1, 10, 8)
    binarize(model, "ste", {"activation": "hardtanh"}, scale="rbonn")
    opt = build_optimizer(model, {"name": "adam", "lr": 0.004})
    us = {id(m.u) for m in model.modules() if isinstance(m, RBONNScale)}
    assert len(us) == 20  # one per binary layer
    (slow,) = [g for g in opt.param_groups if g.get("lr_factor")]
    assert {id(p) for p in slow["params"]} == us and slow["lr"] == pytest.approx(0.0004)
    assert all(g["lr"] == 0.004 for g in opt.param_groups if g is not slow)


@pytest.mark.slow
def test_rbonn_one_epoch_on_digits(run_cli, tmp_path):
    """``experiment=rbonn`` on digits: above chance (0.1) by far after one epoch (0.60 when
    written; a constant lr of 0.02, as one epoch of the default warm-up + cosine at 0.005
    leaves any 1W1A ResNet-20 near chance), u trained, the recurrent step's gradient kept in
    the checkpointed state, packed evaluation equal to float."""
    proc = run_cli(
        "data=digits",
        "experiment=rbonn",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
        "logger=none",
        "scheduler=none",
        "optimizer.lr=0.02",
        run_dir=tmp_path / "run",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "run/metrics.json").read_text())
    assert metrics["test/acc"] > 0.4, metrics["test/acc"]
    assert metrics["packed/test_acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)
    w = torch.load(tmp_path / "run/final_weights.pt")
    assert w["layer2.0.conv1.scale.last_grad"].abs().sum() > 0
    assert not torch.allclose(w["layer2.0.conv1.scale.u"], torch.full((32,), 0.2))

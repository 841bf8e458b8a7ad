"""Estimators: forward is the exact sign, backward the formula of docs/methods.md section 1,
recomputed here with numpy (not the package's code path)."""

import math

import numpy as np
import pytest
import torch

from bnn_lab import estimators

POINTS = np.concatenate([np.random.default_rng(0).uniform(-2, 2, 200), [0.0, -0.0, 1.0, -1.0, 1.0001, -1.0001]])


def forward_backward(est, x_np):
    x = torch.tensor(x_np, dtype=torch.float64, requires_grad=True)
    y = est(x)
    y.backward(torch.ones_like(y))
    return y.detach().numpy(), x.grad.numpy()


def test_names_and_unknown_name_lists_valid_ones():
    assert {"ste", "identity", "fda"} <= set(estimators.names())
    with pytest.raises(ValueError) as err:
        estimators.build("nope")
    for name in estimators.names():
        assert name in str(err.value)


def test_unknown_keyword_is_an_error():
    with pytest.raises(ValueError, match="clip"):
        estimators.build("ste", clipp=2.0)


@pytest.mark.parametrize("name", ["ste", "identity", "fda"])
def test_forward_is_sign_with_zero_positive(name):
    est = estimators.build(name).eval()
    y, _ = forward_backward(est, POINTS)
    expected = np.where(POINTS >= 0, 1.0, -1.0)  # -0.0 >= 0 is True in IEEE
    assert np.array_equal(y, expected)


@pytest.mark.parametrize("clip", [1.0, 0.5])
def test_ste_gradient(clip):
    _, g = forward_backward(estimators.build("ste", clip=clip), POINTS)
    assert np.array_equal(g, (np.abs(POINTS) <= clip).astype(float))  # |x| = clip is inside


def test_identity_gradient():
    _, g = forward_backward(estimators.build("identity"), POINTS)
    assert np.array_equal(g, np.ones_like(POINTS))


def fda_reference(x, n, omega):
    total = np.zeros_like(x)
    for i in range(n):
        total += np.cos((2 * i + 1) * omega * x)
    return np.where(np.abs(x) <= 1, 4 * omega / math.pi * total, 0.0)


@pytest.mark.parametrize("p", [0.0, 0.3, 0.5, 0.99, 1.0])
def test_fda_gradient_follows_the_term_schedule(p):
    est = estimators.build("fda", terms_start=9, terms_end=18, omega=0.1, noise=False)
    est.set_progress(p)
    n = 9 + math.floor(9 * p)
    _, g = forward_backward(est, POINTS)
    np.testing.assert_allclose(g, fda_reference(POINTS, n, 0.1), rtol=1e-12, atol=1e-12)
    # at 0 the series is n cosines of 0
    assert g[POINTS == 0][0] == pytest.approx(4 * 0.1 / math.pi * n)


def test_fda_noise_only_in_training_and_its_parameters_train():
    torch.manual_seed(0)
    est = estimators.build("fda", features=128)
    assert est.noise is not None
    w = torch.randn(8, 128)
    est.train()
    est.set_progress(0.0)
    y_train = est(w)
    alpha = 0.1  # cosine decay: 0.1 at p = 0
    expected_noise = 0.1 * torch.sin(w)  # fc2 starts at zero, so e(x) = 0.1 sin(x)
    assert torch.allclose(y_train - torch.where(w >= 0, 1.0, -1.0), alpha * expected_noise, atol=1e-6)
    est.set_progress(1.0)  # alpha decayed to 0
    assert torch.equal(est(w), torch.where(w >= 0, 1.0, -1.0))
    est.set_progress(0.2)
    est.eval()
    assert torch.equal(est(w), torch.where(w >= 0, 1.0, -1.0))
    names = {n for n, _ in est.named_parameters()}
    assert names == {"noise.fc1.weight", "noise.fc2.weight"}
    assert est.noise.fc1.weight.shape == (128 // 64, 128)


def test_fda_noise_parameters_reach_the_optimizer():
    from bnn_lab.models import create
    from bnn_lab.optim import build_optimizer
    from bnn_lab.surgery import binarize

    model = create("resnet20", 1, 10, 28)
    binarize(model, {"name": "fda"}, {"activation": "hardtanh"})
    noise = [p for n, p in model.named_parameters() if ".noise." in n]
    assert noise, "FDA noise modules were not created at construction"
    opt = build_optimizer(model, {"name": "adam", "lr": 1e-3})
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    assert all(id(p) in in_opt for p in noise)


# ---- the rest of the zoo, each against its formula written out with numpy ----


def test_approx_gradient():
    _, g = forward_backward(estimators.build("approx"), POINTS)
    assert np.allclose(g, np.where(np.abs(POINTS) <= 1, 2 - 2 * np.abs(POINTS), 0.0), atol=1e-12)


@pytest.mark.parametrize("beta", [5.0, 2.0])
def test_swish_gradient(beta):
    _, g = forward_backward(estimators.build("swish", beta=beta), POINTS)
    expected = beta * (2 - beta * POINTS * np.tanh(beta * POINTS / 2)) / (1 + np.cosh(beta * POINTS))
    assert np.allclose(g, expected, rtol=1e-10, atol=1e-12)
    assert g[POINTS == 0][0] == pytest.approx(beta)  # peak beta at 0


@pytest.mark.parametrize("p", [0.0, 0.25, 0.5, 1.0])
def test_ede_gradient_schedule(p):
    est = estimators.build("ede", t_min=0.1, t_max=10.0)
    est.set_progress(p)
    p = float(np.float32(p))  # progress is stored in a float32 buffer (it is checkpointed)
    t = 0.1 * 10 ** (p * np.log10(10.0 / 0.1))
    k = max(1 / t, 1.0)
    _, g = forward_backward(est, POINTS)
    assert np.allclose(g, k * t * (1 - np.tanh(t * POINTS) ** 2), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("p", [0.0, 0.2, 0.5, 0.8, 1.0])
def test_dte_two_stage_schedule(p):
    est = estimators.build("dte", t_min=0.1, t_max=10.0, switch=0.5)
    est.set_progress(p)
    p = float(np.float32(p))  # progress is stored in a float32 buffer (it is checkpointed)
    if p < 0.5:
        t = 0.1 ** (1 - p / 0.5)
        k = 1 / t
    else:
        t, k = 10.0 ** ((p - 0.5) / 0.5), 1.0
    _, g = forward_backward(est, POINTS)
    assert np.allclose(g, k * t * (1 - np.tanh(t * POINTS) ** 2), rtol=1e-10, atol=1e-12)
    if p < 0.5:
        assert g[POINTS == 0][0] == pytest.approx(1.0)  # stage 1 keeps height 1 at 0


def test_dte_standardizes_weights_per_output_channel():
    est = estimators.build("dte", role="weight")
    w_np = np.random.default_rng(1).normal(0.3, 2.0, size=(4, 9))
    y, g = forward_backward(est, w_np)
    mean = w_np.mean(1, keepdims=True)
    std = w_np.std(1, ddof=1, keepdims=True)
    assert np.array_equal(y, np.where(w_np - mean >= 0, 1.0, -1.0))
    # backward: g(x_hat) pulled back through x_hat = (w - mean) / std, by hand:
    # d x_hat_j / d w_i = (delta_ij - 1/n) / std - x_hat_j (x_hat_i) / ((n - 1) std)
    n = w_np.shape[1]
    x_hat = (w_np - mean) / std
    t, k = est.tk()
    dy = k * t * (1 - np.tanh(t * x_hat) ** 2)
    expected = (dy - dy.mean(1, keepdims=True)) / std - x_hat * (dy * x_hat).sum(1, keepdims=True) / ((n - 1) * std)
    assert np.allclose(g, expected, rtol=1e-8, atol=1e-10)


def test_mlp_linear_classifier_gradient_and_training():
    est = estimators.build("mlp", hidden=0)
    with torch.no_grad():
        est.a.fill_(2.0)
        est.b.fill_(0.5)
    y, g = forward_backward(est, POINTS)
    assert np.array_equal(y, np.where(POINTS >= 0, 1.0, -1.0))
    c = 2.0 * POINTS + 0.5
    assert np.allclose(g, 2.0 * (1 - np.tanh(c) ** 2), rtol=1e-6, atol=1e-7)
    x = torch.tensor(POINTS, dtype=torch.float32)
    est(x).sum().backward()
    assert est.a.grad is not None and est.b.grad is not None and float(est.a.grad.abs()) > 0


def test_mlp_starts_as_identity_classifier():
    est = estimators.build("mlp", hidden=8).double()
    _, g = forward_backward(est, POINTS)
    assert np.allclose(g, 1 - np.tanh(POINTS) ** 2, atol=1e-12)


def test_rsign_threshold_per_channel():
    est = estimators.build("rsign", channels=3, role="input").double()
    with torch.no_grad():
        est.threshold.copy_(torch.tensor([0.5, -0.25, 0.0]))
    rng = np.random.default_rng(2)
    x_np = rng.uniform(-2, 2, size=(2, 3, 4, 4))
    b = np.array([0.5, -0.25, 0.0]).reshape(1, 3, 1, 1)
    x = torch.tensor(x_np, requires_grad=True)
    y = est(x)
    y.backward(torch.ones_like(y))
    u = x_np - b
    assert np.array_equal(y.detach().numpy(), np.where(u >= 0, 1.0, -1.0))
    approx = np.where(np.abs(u) <= 1, 2 - 2 * np.abs(u), 0.0)
    assert np.allclose(x.grad.numpy(), approx)
    assert np.allclose(est.threshold.grad.numpy(), -approx.sum(axis=(0, 2, 3)))
    assert estimators.build("rsign", channels=3, role="weight").threshold is None


def test_adabin_activations_and_weights():
    act = estimators.build("adabin", role="input").double()
    with torch.no_grad():
        act.alpha.fill_(0.2)
        act.beta.fill_(0.5)
    y, g = forward_backward(act, POINTS)
    u = (POINTS - 0.2) / 0.5
    assert np.allclose(y, 0.5 * np.where(u >= 0, 1.0, -1.0) + 0.2)
    assert np.allclose(g, (np.abs(u) <= 1).astype(float))  # d/dx beta * ste(u) = 1[|u| <= 1]
    w_np = np.random.default_rng(3).normal(0.1, 0.7, size=(5, 12))
    wy, _ = forward_backward(estimators.build("adabin", role="weight"), w_np)
    mean, std = w_np.mean(1, keepdims=True), w_np.std(1, ddof=1, keepdims=True)
    assert np.allclose(wy, std * np.where(w_np - mean >= 0, 1.0, -1.0) + mean)
    assert len(np.unique(np.round(wy[0], 12))) == 2


@pytest.mark.parametrize("name", ["approx", "swish", "ede", "dte", "mlp", "rsign"])
def test_every_estimator_outputs_exact_signs(name):
    est = estimators.build(name).eval()
    x = torch.tensor([0.0, -0.0, 0.5, -0.5, 3.0, -3.0], requires_grad=True)
    assert torch.equal(est(x), torch.tensor([1.0, 1.0, 1.0, -1.0, 1.0, -1.0]))


@pytest.mark.parametrize("name", ["ste", "identity", "approx", "swish", "ede", "fda"])
def test_schedule_free_estimators_accept_progress(name):
    est = estimators.build(name)
    est.set_progress(0.7)
    assert float(est.progress) == pytest.approx(0.7)


def test_progress_callback_drives_schedules():
    from bnn_lab.training.callbacks import EstimatorProgress

    model = torch.nn.Sequential(estimators.build("ede"), estimators.build("fda"))

    class FakeTrainer:
        estimated_stepping_batches = 10
        global_step = 5

    EstimatorProgress().on_train_batch_start(FakeTrainer(), model, None, 0)
    assert float(model[0].progress) == pytest.approx(0.5)
    assert model[1].terms == 9 + 4  # floor(9 * 0.5)


@pytest.mark.parametrize("name", ["fda", "mlp", "rsign", "adabin"])
def test_learned_estimator_parameters_are_in_the_optimizer(name):
    from bnn_lab.models import create
    from bnn_lab.optim import build_optimizer
    from bnn_lab.surgery import binarize

    model = create("resnet20", 1, 10, 8)
    binarize(model, {"name": name}, {"activation": "rprelu"})
    extra = [p for n, p in model.named_parameters() if "estimator" in n]
    assert extra, f"{name} created no parameters"
    opt = build_optimizer(model, {"name": "adam", "lr": 1e-3})
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    assert all(id(p) in in_opt for p in extra)
    model(torch.randn(2, 1, 8, 8)).sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in extra)


def test_mlp_hidden_units_learn_a_different_backward():
    est = estimators.build("mlp", hidden=4).double()
    with torch.no_grad():
        est.w2.copy_(torch.tensor([0.5, 0.0, 0.0, 0.0]))
    x_np = np.array([-0.9, -0.2, 0.3, 0.8])
    _, g = forward_backward(est, x_np)
    b1 = np.linspace(-1, 1, 4)
    w1 = np.array([1.0, 1.0, -1.0, -1.0])
    pre = np.outer(x_np, w1) + b1
    c = x_np + np.maximum(pre, 0) @ np.array([0.5, 0, 0, 0])
    dc = 1 + ((pre > 0) * w1) @ np.array([0.5, 0, 0, 0])
    assert np.allclose(g, (1 - np.tanh(c) ** 2) * dc)


@pytest.mark.parametrize("hidden", [0, 8])
@pytest.mark.parametrize("fused", [False, True])
def test_mlp_backward_equals_autograd_through_its_classifier(hidden, fused):
    """dx and every parameter's gradient from mlp_vjp (one loop when fused: 2**17 activations take the
    compiled path) equal autograd through ``classifier``: tanh(c(x)) differentiated by torch."""
    torch.manual_seed(0)
    est = estimators.build("mlp", hidden=hidden, fused=fused).train()
    with torch.no_grad():
        for p in est.parameters():
            p.add_(0.3 * torch.randn_like(p))  # away from the identity start: every term matters
    x = 1.5 * torch.randn(8, 16, 32, 32)
    dy = torch.randn_like(x)

    def grads(forward):
        xi = x.clone().requires_grad_(True)
        est.zero_grad()
        forward(xi).backward(dy)
        return [xi.grad] + [p.grad.clone() for p in est.parameters()]

    y = est(x.clone().requires_grad_(True))
    assert torch.equal(y, torch.where(x >= 0, 1.0, -1.0))
    reference = grads(lambda xi: torch.tanh(est.classifier(xi)))
    for got, want in zip(grads(est), reference):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))
    if fused:  # the compiled loop ran, not its eager fallback
        assert est.vjp.compiled is not None and not est.vjp.failed

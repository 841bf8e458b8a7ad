"""ReCU and BiPer against numpy: the forward values and the gradients of docs/methods.md,
section 1, derived by hand here (the chain rule through the standardizations written out),
and ReCU's clamp at two points of its tau schedule."""

import math

import numpy as np
import pytest
import torch

from bnn_lab import estimators

K = 2 * math.sqrt(2)
EPS = 1e-5


def sign(a):
    return np.where(a >= 0, 1.0, -1.0)


def run(est, x_np, dy_np):
    x = torch.tensor(x_np, dtype=torch.float64, requires_grad=True)
    y = est(x)
    y.backward(torch.tensor(dy_np))
    return y.detach().numpy(), x.grad.numpy()


def tau_at(p, lo=0.85, hi=0.99):
    return lo + (hi - lo) * (math.exp(p) - 1) / (math.e - 1)


def recu_reference(w, dy, tau):
    """Forward and gradient of sum(dy * sign(clamp(w1, -Q, Q))) with the identity through the
    sign and Q a constant, per output channel (rows of w.reshape(C, -1))."""
    c = w.shape[0]
    flat, dflat = w.reshape(c, -1), dy.reshape(c, -1)
    n = flat.shape[1]
    w0 = flat - flat.mean(1, keepdims=True)
    s = np.sqrt((w0**2).sum(1, keepdims=True) / (n - 1) + EPS)
    w1 = K * w0 / s
    q = -np.abs(w1).mean() * math.log(2 - 2 * tau)
    inside = (np.abs(w1) <= q).astype(float)
    u = dflat * inside  # d loss / d w1
    # w1 = K w0 / s(w0): d/dw0 = K u / s - K sum(u w0) w0 / (s^3 (n - 1)); then centering
    g0 = K * u / s - K * (u * w0).sum(1, keepdims=True) * w0 / (s**3 * (n - 1))
    grad = g0 - g0.mean(1, keepdims=True)
    return sign(np.clip(w1, -q, q)).reshape(w.shape), grad.reshape(w.shape), inside.mean()


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_recu_weights_clamp_at_the_laplace_quantile_of_their_schedule_point(p):
    rng = np.random.default_rng(1)
    w = rng.laplace(0.0, 0.05, size=(4, 64, 3, 3)) + rng.normal(0, 0.01, size=(4, 1, 1, 1))
    dy = rng.normal(size=w.shape)
    est = estimators.build("recu", role="weight")
    est.set_progress(p)
    tau = tau_at(p)
    assert est.tau == pytest.approx(tau, abs=1e-12)
    y, g = run(est, w, dy)
    ref_y, ref_g, inside = recu_reference(w, dy, tau)
    # the quantile: a fraction 2 tau - 1 of Laplace weights lies within +-Q (70 % at the start,
    # 98 % at the end), the rest is clamped and gets gradient only through the statistics
    assert inside == pytest.approx(2 * tau - 1, abs=0.03)
    assert np.array_equal(y, ref_y)
    np.testing.assert_allclose(g, ref_g, rtol=1e-9, atol=1e-12)


def test_recu_sign_is_that_of_the_centered_weight_and_the_schedule_is_exponential():
    w = torch.tensor([[0.3, 0.1, -0.2, 0.05, 2.0]], dtype=torch.float64)
    est = estimators.build("recu", role="weight").eval()
    # the mean is 0.45: sign(w) would be (+ + - + +)
    assert torch.equal(est(w), torch.tensor([[-1.0, -1.0, -1.0, -1.0, 1.0]], dtype=torch.float64))
    est.set_progress(0.5)
    assert est.tau == pytest.approx(0.85 + 0.14 * (math.sqrt(math.e) - 1) / (math.e - 1))
    with pytest.raises(ValueError, match="tau_max"):
        estimators.build("recu", role="weight", tau_max=1.0)


def standardized_input_reference(x, dy, training):
    """Forward and gradient of sum(dy * sign(x0)) with ApproxSign's surrogate, x0 the
    per-sample standardized x while training (unbiased variance, no centering)."""
    n_samples = x.shape[0]
    flat, dflat = x.reshape(n_samples, -1), dy.reshape(n_samples, -1)
    if not training:
        return sign(flat).reshape(x.shape), (dflat * 2 * np.maximum(1 - np.abs(flat), 0)).reshape(x.shape)
    n = flat.shape[1]
    centered = flat - flat.mean(1, keepdims=True)
    s = np.sqrt((centered**2).sum(1, keepdims=True) / (n - 1) + EPS)
    x0 = flat / s
    h = dflat * 2 * np.maximum(1 - np.abs(x0), 0)  # d loss / d x0
    grad = h / s - (h * flat).sum(1, keepdims=True) * centered / (s**3 * (n - 1))
    return sign(x0).reshape(x.shape), grad.reshape(x.shape)


@pytest.mark.parametrize("name", ["recu", "biper"])
@pytest.mark.parametrize("training", [True, False])
def test_inputs_standardized_per_sample_while_training(name, training):
    rng = np.random.default_rng(2)
    x = rng.normal(0.2, 0.6, size=(3, 4, 5, 5))
    x[0, 0, 0, 0] = 0.0
    dy = rng.normal(size=x.shape)
    est = estimators.build(name, role="input").train(training)
    y, g = run(est, x, dy)
    ref_y, ref_g = standardized_input_reference(x, dy, training)
    assert np.array_equal(y, ref_y) and y[0, 0, 0, 0] == 1.0
    np.testing.assert_allclose(g, ref_g, rtol=1e-9, atol=1e-12)
    assert est.packed_threshold() is None  # eval binarizes sign(x): nothing for the packed layer


@pytest.mark.parametrize("omega", [20.0, 3.0])
def test_biper_weights_are_a_square_wave_with_the_sines_derivative(omega):
    rng = np.random.default_rng(3)
    w = rng.normal(0, 0.2, size=(8, 27))
    w[0, :3] = [0.0, math.pi / omega + 1e-9, -math.pi / omega - 1e-9]
    dy = rng.normal(size=w.shape)
    y, g = run(estimators.build("biper", role="weight", omega=omega), w, dy)
    assert np.array_equal(y, sign(np.sin(omega * w)))
    assert y[0, 0] == 1.0 and y[0, 1] == -1.0 and y[0, 2] == 1.0  # sign(0) = +1, then the period
    np.testing.assert_allclose(g, dy * omega * np.cos(omega * w), rtol=1e-12, atol=1e-12)

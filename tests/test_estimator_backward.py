"""The fast backward passes of the estimators, against independent references:

- FDA's closed form sin(2 m t) / (2 sin t) against the explicit sum of m cosines (numpy,
  float64), at random points, at the singular points sin t = 0 and next to them, for several
  m and training progress p;
- the polynomial the fused FDA backward evaluates instead, against the same explicit sum, and
  its refusal (closed form instead) where it cannot hold float32 accuracy;
- the one-pass clip (aten's hardtanh backward with bounds just above the clip) against
  |x| <= clip in float64, for every float dtype;
- the clipped STE after a hardtanh inside its clip (nothing kept, dy passed through) and
  outside it (the mask applies), against the mask written out with numpy;
- the sign convention, what the shared autograd Function keeps for the backward pass, and
  the reduced-precision (bfloat16) backward against the float64 one at the same values;
- FDA's cheaper noise-adaptation arithmetic against e(x) written out with numpy;
- the schedules' Python constants after a checkpoint is loaded.
"""

import math

import numpy as np
import pytest
import torch

from bnn_lab import estimators
from bnn_lab.estimators.base import FLOAT_DTYPES, binary_sign, clipped_vjp, inclusive_bound
from bnn_lab.estimators.fda import fourier_polynomial_vjp, fourier_vjp, odd_cosine_sum
from bnn_lab.estimators.fda_polynomial import ratio_polynomial

RNG = np.random.default_rng(7)


def explicit_odd_cosine_sum(t: np.ndarray, m: int) -> np.ndarray:
    return sum(np.cos((2 * i + 1) * t) for i in range(m))


def explicit_fda_gradient(x: np.ndarray, m: int, omega: float) -> np.ndarray:
    return np.where(np.abs(x) <= 1, 4 * omega / math.pi * explicit_odd_cosine_sum(omega * x, m), 0.0)


@pytest.mark.parametrize("m", [1, 2, 9, 13, 18, 40])
def test_closed_form_equals_explicit_sum_at_random_and_singular_points(m):
    singular = np.array([k * math.pi for k in range(-4, 5)])
    near = np.concatenate([singular + d for d in (1e-12, -1e-9, 1e-6, -1e-3)])
    t = np.concatenate([RNG.uniform(-12, 12, 300), singular, near, [0.0, -0.0, 1e-300, -1e-300]])
    got = odd_cosine_sum(torch.tensor(t), m).numpy()
    np.testing.assert_allclose(got, explicit_odd_cosine_sum(t, m), rtol=1e-9, atol=1e-9 * m)
    # the limits where sin t = 0: (-1)^k m
    k = np.arange(-4, 5)
    assert np.array_equal(odd_cosine_sum(torch.tensor(singular), m).numpy(), (-1.0) ** np.abs(k) * m)


def test_methods_md_index_range_is_terms_minus_one():
    """The paper writes sum_{i=0..n}: n + 1 cosines, i.e. terms = n + 1 here."""
    t = torch.tensor(RNG.uniform(-1, 1, 50))
    n = 9
    inclusive = sum(np.cos((2 * i + 1) * t.numpy()) for i in range(0, n + 1))
    np.testing.assert_allclose(odd_cosine_sum(t, n + 1).numpy(), inclusive, rtol=1e-12)


@pytest.mark.parametrize("omega", [0.1, 1.0, math.pi / 2, math.pi, 2 * math.pi])
@pytest.mark.parametrize("p", [0.0, 0.35, 1.0])
def test_fda_backward_equals_explicit_sum(omega, p):
    """Every progress p (m = 9 + floor(9 p)) and frequencies whose clip window holds singular
    points (omega >= pi: w x = +-pi at |x| = 1, 2 pi inside)."""
    est = estimators.build("fda", terms_start=9, terms_end=18, omega=omega, noise=False)
    est.set_progress(p)
    m = 9 + math.floor(9 * float(np.float32(p)))
    assert est.terms == m
    x_np = np.concatenate([RNG.uniform(-2, 2, 400), [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 1.0 + 1e-15, 1e-310]])
    x = torch.tensor(x_np, requires_grad=True)
    dy = torch.tensor(RNG.normal(size=x_np.shape))
    est(x).backward(dy)
    expected = explicit_fda_gradient(x_np, m, omega) * dy.numpy()
    scale = 4 * omega / math.pi * m
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-9, atol=1e-11 * scale)


def test_fda_backward_float32_and_bfloat16_track_float64():
    x64 = torch.tensor(RNG.uniform(-1.5, 1.5, 4000))
    dy64 = torch.tensor(RNG.normal(size=4000))
    bound = {dt: inclusive_bound(1.0, dt) for dt in FLOAT_DTYPES}
    for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 1e-2)):
        x, dy = x64.to(dtype), dy64.to(dtype)
        got = fourier_vjp(dy, x, 0.1, 18, bound[dtype])
        # reference: float64 formula at exactly the values the low-precision tensors hold
        expected = explicit_fda_gradient(x.double().numpy(), 18, 0.1) * dy.double().numpy()
        err = np.abs(got.double().numpy() - expected).max() / np.abs(expected).max()
        assert err < tol, (dtype, err)


@pytest.mark.parametrize("m", [1, 9, 13, 18])
def test_fda_polynomial_backward_equals_explicit_sum(m):
    """The fused loop's polynomial in x^2, evaluated in float32 (and from bfloat16 inputs),
    against the explicit sum of m cosines in float64 at the values the inputs hold: inside the
    window, on its edges, at 0, and outside it (zero, also for infinite x)."""
    coefficients = torch.tensor(ratio_polynomial(0.1, float(m)))
    x64 = np.concatenate([RNG.uniform(-1.5, 1.5, 4000), [0.0, -0.0, 1.0, -1.0, 1e-30, 3.0, -7.0]])
    dy64 = RNG.normal(size=x64.shape)
    for dtype, tol in ((torch.float32, 1e-6), (torch.bfloat16, 1e-2)):
        x, dy = torch.tensor(x64).to(dtype), torch.tensor(dy64).to(dtype)
        got = fourier_polynomial_vjp(dy, x, 0.1, float(m), inclusive_bound(1.0, dtype), coefficients)
        expected = explicit_fda_gradient(x.double().numpy(), m, 0.1) * dy.double().numpy()
        err = np.abs(got.double().numpy() - expected).max() / np.abs(expected).max()
        assert err < tol, (dtype, err)
        assert np.all(got.double().numpy()[np.abs(x.double().numpy()) > 1] == 0)
    x = torch.tensor([math.inf, -math.inf, 0.5])
    got = fourier_polynomial_vjp(torch.ones(3), x, 0.1, float(m), inclusive_bound(1.0, torch.float32), coefficients)
    assert got[0] == 0 and got[1] == 0 and torch.isfinite(got[2])


@pytest.mark.parametrize("omega, m", [(1.0, 18), (0.5, 9), (0.1, 40), (math.pi, 2)])
def test_fda_polynomial_refused_where_it_would_lose_accuracy(omega, m):
    """Where sin(2 m w x) oscillates too fast for the degree (large w m), or sin(w x) vanishes
    inside the window, there is no polynomial, and the fused loop's function is the closed form."""
    assert ratio_polynomial(omega, float(m)) is None
    est = estimators.build("fda", terms_start=m, terms_end=m, omega=omega, noise=False, fused=True)
    assert est.coefficients(torch.device("cpu")) is None
    x, dy = torch.randn(500), torch.randn(500)
    bound = inclusive_bound(1.0, torch.float32)
    assert torch.equal(
        fourier_polynomial_vjp(dy, x, omega, float(m), bound, None), fourier_vjp(dy, x, omega, float(m), bound)
    )


def test_fda_polynomial_follows_the_term_schedule():
    """The fused estimator's coefficients change with the number of terms (new ones when m
    changes, the same tensor otherwise) and are only made for fused estimators."""
    est = estimators.build("fda", fused=True, noise=False)
    cpu = torch.device("cpu")
    est.set_progress(0.0)
    first = est.coefficients(cpu)
    est.set_progress(0.05)  # still 9 terms
    assert est.terms == 9 and est.coefficients(cpu) is first
    est.set_progress(1.0)
    assert est.terms == 18 and est.coefficients(cpu).tolist() == list(ratio_polynomial(0.1, 18.0))
    assert estimators.build("fda", fused=False, noise=False).coefficients(cpu) is None


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("clip", [1.0, 0.5, 0.3, 2.5])
def test_one_pass_clip_is_inclusive_in_every_dtype(dtype, clip):
    c = torch.tensor(clip, dtype=torch.float64).to(dtype)
    inf = torch.tensor(math.inf, dtype=dtype)
    around = [torch.nextafter(c, -inf), c, torch.nextafter(c, inf)]
    x = torch.stack(around + [-v for v in around] + [torch.zeros((), dtype=dtype)])
    got = clipped_vjp(torch.ones_like(x), x, inclusive_bound(clip, dtype))
    expected = (x.double().abs() <= clip).to(dtype)  # decided in float64 against the clip as given
    assert torch.equal(got, expected)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_binary_sign_convention_and_layout(dtype):
    values = torch.tensor([0.0, -0.0, 1e-30, -1e-30, 0.7, -0.7, 3.0, -3.0, math.inf, -math.inf]).to(dtype)
    got = binary_sign(values)
    assert got.dtype == dtype
    v = values.double().numpy()  # -1e-30 is -0.0 in float16: +1 like every zero
    assert got.double().tolist() == np.where(v >= 0, 1.0, -1.0).tolist()
    assert got[1] == 1 and torch.signbit(values[1])  # -0.0 gives +1
    x = torch.randn(2, 3, 4, 5).to(dtype).contiguous(memory_format=torch.channels_last)
    out = binary_sign(x)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out, torch.where(x >= 0, 1.0, -1.0).to(dtype))


@pytest.mark.parametrize("name", ["ste", "approx", "swish", "ede", "dte", "fda"])
def test_backward_keeps_only_x(name):
    """The autograd Function saves x itself (no copy, no float temporaries of its own)."""
    est = estimators.build(name, noise=False) if name == "fda" else estimators.build(name)
    x = torch.randn(4, 8, requires_grad=True)
    y = est(x)
    saved = y.grad_fn.saved_tensors
    assert len(saved) == 1 and saved[0].data_ptr() == x.data_ptr() and saved[0].dtype == x.dtype


def test_plain_ste_keeps_nothing_and_passes_dy_through():
    x = torch.randn(16, requires_grad=True)
    y = estimators.build("identity")(x)
    assert len(y.grad_fn.saved_tensors) == 0
    dy = torch.randn(16)
    y.backward(dy)
    assert torch.equal(x.grad, dy)


@pytest.mark.parametrize("lo,hi,clip", [(-1.0, 1.0, 1.0), (-0.5, 0.8, 1.0), (-2.0, 2.0, 1.0), (-1.0, 1.0, 0.5)])
def test_ste_after_hardtanh(lo, hi, clip):
    """The clipped STE on hardtanh(z): where the hardtanh range lies inside the clip, the mask
    is all ones, nothing is kept and the gradient reaching z is hardtanh's alone; otherwise the
    mask applies. Reference: dy * 1[lo < z < hi] * 1[|hardtanh(z)| <= clip], with numpy."""
    z = torch.tensor(np.concatenate([RNG.uniform(-3, 3, 200), [lo, hi, -clip, clip, 0.0, -0.0]]), requires_grad=True)
    x = torch.nn.functional.hardtanh(z, lo, hi)
    y = estimators.build("ste", clip=clip)(x)
    inside = -clip <= lo and hi <= clip
    assert len(y.grad_fn.saved_tensors) == (0 if inside else 1)
    dy = torch.tensor(RNG.normal(size=z.shape))
    y.backward(dy)
    zn = z.detach().numpy()
    mask = (zn > lo) & (zn < hi) & (np.abs(np.clip(zn, lo, hi)) <= clip)
    np.testing.assert_array_equal(z.grad.numpy(), np.where(mask, dy.numpy(), 0.0))


@pytest.mark.parametrize("name", ["ste", "identity", "approx", "swish", "ede", "dte", "fda", "rsign"])
def test_bfloat16_backward_matches_float64_at_the_same_values(name):
    """The gradient keeps x's dtype and equals the float64 backward (checked against numpy in
    test_estimators.py) at the bfloat16 values, within one bfloat16 rounding of the result."""
    kwargs = {"noise": False} if name == "fda" else {}
    est = estimators.build(name, **kwargs)
    est.set_progress(0.4)
    x16 = torch.tensor(RNG.uniform(-1.5, 1.5, 2000), dtype=torch.bfloat16)
    dy16 = torch.tensor(RNG.normal(size=2000), dtype=torch.bfloat16)
    grads = {}
    for dtype in (torch.bfloat16, torch.float64):
        x = x16.to(dtype).clone().requires_grad_(True)
        est(x).backward(dy16.to(dtype))
        grads[dtype] = x.grad
    assert grads[torch.bfloat16].dtype == torch.bfloat16
    ref = grads[torch.float64]
    # one bfloat16 rounding of the result (2^-8 relative): the formula itself runs in float32
    err = (grads[torch.bfloat16].double() - ref).abs() / (ref.abs() + 1e-3 * ref.abs().max())
    assert float(err.max()) < 5e-3


def test_fda_noise_arithmetic_equals_its_formula():
    """sign(w) + alpha (fc2 relu(fc1 w) + 0.1 sin w), recomputed with numpy from the weights,
    in value and in the gradients of fc1, fc2 and w (reference: the same formula in plain
    float64 autograd)."""
    torch.manual_seed(0)
    est = estimators.build("fda", features=128).double().train()
    with torch.no_grad():
        est.noise.fc2.weight.normal_(0, 0.3)
    est.set_progress(0.25)
    alpha = 0.1 * 0.5 * (1 + math.cos(math.pi * 0.25))
    w = torch.randn(6, 128, dtype=torch.float64, requires_grad=True)
    out = est(w)
    w1, w2, wn = est.noise.fc1.weight.detach().numpy(), est.noise.fc2.weight.detach().numpy(), w.detach().numpy()
    e = np.maximum(wn @ w1.T, 0) @ w2.T + 0.1 * np.sin(wn)
    np.testing.assert_allclose(out.detach().numpy(), np.where(wn >= 0, 1.0, -1.0) + alpha * e, rtol=1e-12, atol=1e-12)
    dy = torch.randn_like(out)
    out.backward(dy)
    got = [est.noise.fc1.weight.grad.clone(), est.noise.fc2.weight.grad.clone(), w.grad.clone()]
    # reference: straightforward autograd of alpha * e(w), plus the Fourier gradient for w
    f1 = est.noise.fc1.weight.detach().clone().requires_grad_(True)
    f2 = est.noise.fc2.weight.detach().clone().requires_grad_(True)
    w_ref = w.detach().clone().requires_grad_(True)
    noise = torch.relu(w_ref @ f1.T) @ f2.T + 0.1 * torch.sin(w_ref)
    (alpha * noise * dy).sum().backward()
    fourier = torch.tensor(explicit_fda_gradient(wn, est.terms, 0.1)) * dy
    for g, r in zip(got, [f1.grad, f2.grad, w_ref.grad + fourier]):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "name,check",
    [
        ("ede", lambda est, p: est.t == pytest.approx(0.1 * 100**p)),
        ("dte", lambda est, p: est.tk() == pytest.approx((10.0 ** ((p - 0.5) / 0.5), 1.0))),
        (
            "fda",
            lambda est, p: (
                est.terms == 9 + math.floor(9 * p) and est.alpha == pytest.approx(0.05 * (1 + math.cos(math.pi * p)))
            ),
        ),
    ],
)
def test_schedule_constants_follow_a_loaded_checkpoint(name, check):
    source = estimators.build(name)
    source.set_progress(0.8)
    est = estimators.build(name)
    est.load_state_dict(source.state_dict())
    p = float(np.float32(0.8))
    assert est.progress_value == p and check(est, p)


def test_fused_backward_falls_back_without_a_compiler(caplog):
    """With no working C++ compiler the fused backward warns once and computes eagerly."""
    import torch._inductor.config as inductor_config

    from bnn_lab.estimators.fusion import FusedLoop

    def scaled_sine_vjp(dy, x, c):  # a function of its own: no compiled artifact cached for it
        return torch.sin(x * c).mul_(dy).add_(0.125)

    vjp = FusedLoop(scaled_sine_vjp)
    x, dy = torch.randn(300, 300), torch.randn(300, 300)
    with (
        inductor_config.patch({"cpp.cxx": ("/nonexistent/c++",)}),
        caplog.at_level("WARNING", logger="bnn_lab.estimators.fusion"),
    ):
        out = vjp(dy, x, 0.3)
        again = vjp(dy, x, 0.3)
    assert vjp.failed
    assert torch.equal(out, scaled_sine_vjp(dy, x, 0.3)) and torch.equal(again, out)
    assert sum("using the eager one" in r.getMessage() for r in caplog.records) == 1

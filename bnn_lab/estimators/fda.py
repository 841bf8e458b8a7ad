"""FDA: Fourier frequency-domain approximation of sign (Xu et al., NeurIPS 2021, FDA-BNN).

The square wave equals sign(x) on one period and has the Fourier series
(4/pi) sum_i sin((2i+1) w x) / (2i+1); its derivative, truncated to m terms, is the
surrogate gradient

    g(x) = (4 w / pi) * sum_{i=0}^{m-1} cos((2i+1) w x),   zero where |x| > 1,

with m = terms_start + floor((terms_end - terms_start) * p) growing with the training
progress p in [0, 1] (``terms``). ``terms`` counts the cosines: the FDA paper writes the same
sum as i = 0..n, i.e. n = terms - 1.

The backward does not expand x by m terms: the sum of cosines of odd multiples has the
closed form (:func:`odd_cosine_sum`)

    sum_{i=0}^{m-1} cos((2i+1) t) = sin(2 m t) / (2 sin t)      (= +-m where sin t = 0),

so its cost does not grow with m (two sines per element instead of m cosines). With
``fused=True`` (the config's default) the backward runs as one compiled loop
(:mod:`bnn_lab.estimators.fusion`), eagerly where no compiler works; that loop evaluates the
same ratio as a polynomial in x^2 instead (:mod:`.fda_polynomial`: multiply-adds instead of
two sines and a division, checked against float64 for each number of terms).

Noise adaptation (``noise=True``): a small module e(x) = fc2(relu(fc1(x))) + 0.1 sin(x)
(fc1 shrinks the feature dimension by 64, no biases) learns the residual between sign and
its truncated series. During training the output is sign(x) + alpha(p) * e(x) with
alpha(p) = alpha0 * (1 + cos(pi p)) / 2 decaying from alpha0 = 0.1 to 0; in ``eval()`` the
output is exactly +-1 and e is not computed. :mod:`.fda_noise` forms sign + alpha e; the
weights of all the FDA layers of a model go through it together, once per forward pass of
the model (:meth:`FDA.binarize_group`, called by :mod:`bnn_lab.layers.weight_group`). The
module needs the feature size at construction (so its parameters exist before the
optimizer is built); the surgery pass provides ``features`` for weight binarizers (one row
per output channel, as in the paper's weight binarization). Without ``features``
(activation binarizers) no noise module is created and only the Fourier gradient is used.
"""

from __future__ import annotations

import math

import torch

from .base import UNIT_BOUNDS, SignEstimator, binary_sign, clipped_vjp, compute_dtype
from .fda_noise import NoiseAdaptation, noise_terms, noisy_signs
from .fda_polynomial import polynomial_ratio, ratio_polynomial
from .registry import register

# below this |t| the closed form is evaluated at TINY instead: sin(2 m t) / (2 sin t) differs
# from its limit m by m (4 m^2 - 1) t^2 / 6, far below rounding, and 0 / 0 never happens
TINY = 1e-30


def odd_cosine_sum(t: torch.Tensor, terms: int | float) -> torch.Tensor:
    """sum_{i=0}^{terms-1} cos((2i+1) t), elementwise, in closed form: sin(2 m t) / (2 sin t)."""
    return _sine_ratio(t.abs(), terms, reduce=True).mul_(0.5)


def _sine_ratio(a: torch.Tensor, terms: int | float, reduce: bool) -> torch.Tensor:
    """sin(2 m a) / sin a for a = |t| (twice the odd cosine sum), overwriting ``a``.

    a is clamped to >= ``TINY`` (no 0 / 0 at t = 0). Without ``reduce``, a < pi / 2 must hold
    where the result is used. With ``reduce`` the argument is first brought to
    d = a - k pi, |d| <= pi / 2: sin(2 m a) = sin(2 m d) and sin a = (-1)^k sin d, so the
    singular points a = k pi (limit (-1)^k 2 m) become the harmless d = 0, and sin d has no
    cancellation there.
    """
    parity = None
    if reduce:
        k = torch.round(a / math.pi)
        parity = torch.remainder(k, 2).mul_(-2).add_(1)  # (-1)^k
        a = a.sub_(k.mul_(math.pi)).abs_()
    a = a.clamp_min_(TINY)
    denominator = torch.sin(a)
    ratio = a.mul_(2 * terms).sin_().div_(denominator)
    return ratio if parity is None else ratio.mul_(parity)


def fourier_vjp(
    dy: torch.Tensor,
    x: torch.Tensor,
    omega: float,
    terms: int | float,
    bound: float,
    coefficients: torch.Tensor | None = None,
) -> torch.Tensor:
    """dy * (4 w / pi) sum_{i<terms} cos((2i+1) w x) * 1[|x| <= 1], in float32 at least.

    ``bound``: the inclusive bound of 1 for x's dtype (the clip is aten's hardtanh backward).
    ``coefficients`` (for :func:`fourier_polynomial_vjp`, same arguments) is not used here.
    Inside the clip |w x| <= w, so the argument reduction is needed only for w >= pi / 2; the
    default w = 0.1 takes eight light elementwise passes and two sines, whatever ``terms``
    (one compiled loop with ``fused=True``).
    """
    cdt = compute_dtype(x)
    a = (x * omega if cdt == x.dtype else x.to(cdt).mul_(omega)).abs_()
    return _in_window(_sine_ratio(a, terms, reduce=omega >= math.pi / 2), dy, x, omega, bound)


def fourier_polynomial_vjp(
    dy: torch.Tensor,
    x: torch.Tensor,
    omega: float,
    terms: int | float,
    bound: float,
    coefficients: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`fourier_vjp` with the ratio as the polynomial ``coefficients`` in x^2
    (:func:`.fda_polynomial.ratio_polynomial` for this omega and number of terms); the closed
    form where there is none. What the compiled loop of ``fused=True`` runs."""
    if coefficients is None:
        return fourier_vjp(dy, x, omega, terms, bound)
    return _in_window(polynomial_ratio(x.to(compute_dtype(x)), coefficients), dy, x, omega, bound)


def _in_window(ratio: torch.Tensor, dy: torch.Tensor, x: torch.Tensor, omega: float, bound: float) -> torch.Tensor:
    """(2 w / pi) R dy 1[|x| <= 1] from R = sin(2 m w x) / sin(w x), overwriting ``ratio``."""
    return ratio.mul_(clipped_vjp(dy, x, bound)).mul_(2 * omega / math.pi)


@register("fda")
class FDA(SignEstimator):
    vjp_fn = staticmethod(fourier_vjp)
    fast_vjp_fn = staticmethod(fourier_polynomial_vjp)

    def __init__(
        self,
        terms_start: int = 9,
        terms_end: int = 18,
        omega: float = 0.1,
        noise: bool = True,
        alpha: float = 0.1,
        features: int | None = None,
        fused: bool = False,
    ) -> None:
        super().__init__(fused=fused)
        if terms_start < 1 or terms_end < terms_start:
            raise ValueError("fda needs 1 <= terms_start <= terms_end")
        self.terms_start, self.terms_end = int(terms_start), int(terms_end)
        self.omega, self.alpha0 = float(omega), float(alpha)
        self.noise = NoiseAdaptation(features) if (noise and features) else None
        self.noise_terms = noise_terms(self.vjp_fn, self.fused, self.fast_vjp_fn)
        self.terms = None
        self.schedule(self.progress_value)

    def schedule(self, p: float) -> None:
        terms = self.terms_start + math.floor((self.terms_end - self.terms_start) * p)
        if terms != self.terms:
            self.terms = terms
            self._terms = float(terms)  # torch.compile: float attributes become graph inputs, ints guards
            self._coefficients: dict[torch.device, torch.Tensor | None] = {}
        self.alpha = self.alpha0 * 0.5 * (1.0 + math.cos(math.pi * p))

    def coefficients(self, device: torch.device) -> torch.Tensor | None:
        """The ratio's polynomial for the compiled loop (float32, on ``device``), or None:
        not fused, no polynomial for this omega and number of terms, or code being compiled
        as a whole (which takes the closed form)."""
        if not self.fused or torch.compiler.is_compiling():
            return None
        if device not in self._coefficients:
            c = ratio_polynomial(self.omega, self._terms)
            self._coefficients[device] = None if c is None else torch.tensor(c, dtype=torch.float32, device=device)
        return self._coefficients[device]

    def surrogate(self, x: torch.Tensor):
        return self.vjp, (self.omega, self._terms, UNIT_BOUNDS[x.dtype], self.coefficients(x.device))

    def noisy(self) -> bool:
        """True while the output is sign + alpha e (training, alpha > 0, a noise module)."""
        return self.noise is not None and self.training and self.alpha > 0

    def group_key(self, w: torch.Tensor) -> tuple | None:
        """Weights whose estimators give equal keys are binarized together
        (:meth:`binarize_group`); None: no noise now, the plain sign path."""
        if not self.noisy():
            return None
        return (self.omega, self._terms, self.alpha, self.fused, w.device, w.dtype)

    @classmethod
    def binarize_group(cls, estimators: list["FDA"], weights: list[torch.Tensor]) -> list[torch.Tensor]:
        """sign(w) + alpha e(w) of several weights in one elementwise pass (:func:`.fda_noise.noisy_signs`);
        the estimators have equal :meth:`group_key` values."""
        lead = estimators[0]
        _, constants = lead.surrogate(weights[0])
        return noisy_signs(weights, [e.noise for e in estimators], lead.alpha, lead.noise_terms, constants)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.noisy():
            return super().forward(x)
        return self.binarize_group([self], [x])[0]

    def extra_repr(self) -> str:
        return f"terms={self.terms}, omega={self.omega}, noise={self.noise is not None}"


__all__ = ["FDA", "NoiseAdaptation", "binary_sign", "fourier_polynomial_vjp", "fourier_vjp", "odd_cosine_sum"]

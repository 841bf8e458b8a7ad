"""FDA's Fourier ratio as one polynomial in x^2, for the compiled (fused) backward.

Inside FDA's window |x| <= 1 the surrogate needs

    R(x) = sin(2 m w x) / sin(w x)          (twice the sum of m odd cosines of w x),

an even, smooth function of x that :func:`.fda.fourier_vjp` evaluates with two sines and a
division. In the compiled loop of a large activation those two sines, not the memory
traffic, set the time (on CPU about a third of the loop). Here R is instead a polynomial
P(v) of fixed degree in v = x^2 on [0, 1]: ``DEGREE`` multiply-adds per element, no
division, no zero to special-case (R(0) = 2 m is P(0)).

The coefficients come from Chebyshev interpolation of R in float64 (numpy), once per
(w, m) pair, and are accepted only if P evaluated in float32 stays within
``TOLERANCE`` x 2 m of R (the largest |R|) on a dense grid of x, the same order as the
float32 rounding of the closed form. Where R oscillates too much for the degree (large w or m;
never for FDA's defaults w = 0.1, m <= 18, where 2 m w <= 3.6) :func:`ratio_polynomial`
returns None and the closed form is used.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

DEGREE = 12  # in v = x^2 (degree 24 in x)
TOLERANCE = 5e-7  # of 2 m, the largest |R|; the float32 closed form is about 1e-7
GRID = 4097  # points of x in [0, 1] the accepted polynomial is checked on


def ratio_truth(x: np.ndarray, omega: float, terms: float) -> np.ndarray:
    """R(x) = sin(2 m w x) / sin(w x) in float64, with its limit 2 m at x = 0."""
    a = omega * np.asarray(x, dtype=np.float64)
    safe = np.where(a == 0, 1.0, a)
    return np.where(a == 0, 2.0 * terms, np.sin(2 * terms * safe) / np.sin(safe))


def horner(coefficients, v):
    """sum_k c_k v^k (coefficients ascending), in the arithmetic of ``v``."""
    p = coefficients[-1]
    for c in coefficients[-2::-1]:
        p = p * v + c
    return p


@functools.lru_cache(maxsize=64)
def ratio_polynomial(omega: float, terms: float) -> tuple[float, ...] | None:
    """Ascending coefficients of P with P(x^2) = R(x) on |x| <= 1, or None where float32
    evaluation of a degree-``DEGREE`` polynomial cannot hold ``TOLERANCE``."""
    if omega >= math.pi / 2:  # sin(w x) vanishes inside the window: R is not polynomial-like there
        return None
    cheb = np.polynomial.Chebyshev.interpolate(
        lambda v: ratio_truth(np.sqrt(np.clip(v, 0.0, 1.0)), omega, terms), DEGREE, domain=[0.0, 1.0]
    )
    coefficients = cheb.convert(kind=np.polynomial.Polynomial, domain=[0.0, 1.0], window=[0.0, 1.0]).coef
    c32 = coefficients.astype(np.float32)
    x = np.linspace(0.0, 1.0, GRID)
    got = horner(c32, np.square(x.astype(np.float32))).astype(np.float64)
    if not np.all(np.abs(got - ratio_truth(x, omega, terms)) <= TOLERANCE * 2 * terms):
        return None
    return tuple(float(c) for c in c32)


def polynomial_ratio(x: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
    """P(x^2) for x clamped to [-1, 1] (outside the window the caller's mask zeroes the
    result; the clamp keeps it finite there). ``coefficients``: a 1-D tensor on x's device
    (read inside the compiled loop, not passed as many scalar inputs)."""
    v = x.clamp(-1.0, 1.0).square()
    return horner([coefficients[k] for k in range(coefficients.shape[0])], v)

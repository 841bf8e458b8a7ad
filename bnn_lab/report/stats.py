"""Mean, spread and Student-t confidence intervals over seeds, and the paired difference of
two arms over the seeds they share.

For n values x_i with mean m and sample standard deviation s (n - 1 in the denominator),
the 1 - a interval of the mean is m +- t_{1-a/2, n-1} s / sqrt(n): exact when the x_i are
independent draws of a normal variable, the usual assumption for accuracies over seeds.

Two arms run with the same seeds share the initialization and the batch order of each
seed, so their accuracies move together; the difference d_i = x_i(arm) - x_i(baseline) of
each seed removes that common part, and its interval (the same formula over the d_i) is
narrower than one computed from the two arms' spreads. The verdict: a gain when the whole
interval is above 0, a loss when it is below, otherwise not distinguishable.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Hashable

from scipy import stats

LEVEL = 0.95
GAIN, LOSS, UNCLEAR, TOO_FEW = "gain", "loss", "not distinguishable", "n < 2: no interval"


@dataclass(frozen=True)
class Estimate:
    n: int
    mean: float
    std: float | None  # None for n < 2
    low: float | None  # the confidence interval of the mean; None for n < 2
    high: float | None

    @property
    def half_width(self) -> float | None:
        return None if self.low is None else (self.high - self.low) / 2


def estimate(values: Iterable[float], level: float = LEVEL) -> Estimate:
    xs = [float(v) for v in values]
    if not xs:
        raise ValueError("no value to estimate from")
    n, mean = len(xs), statistics.fmean(xs)
    if n < 2:
        return Estimate(n, mean, None, None, None)
    std = statistics.stdev(xs)
    half = float(stats.t.ppf((1 + level) / 2, n - 1)) * std / math.sqrt(n)
    return Estimate(n, mean, std, mean - half, mean + half)


def paired_difference(
    arm: Mapping[Hashable, float], baseline: Mapping[Hashable, float], level: float = LEVEL
) -> Estimate | None:
    """``arm - baseline`` over the seeds (keys) both have; None when they share none."""
    shared = [k for k in arm if k in baseline]
    if not shared:
        return None
    return estimate([arm[k] - baseline[k] for k in shared], level)


def verdict(diff: Estimate) -> str:
    if diff.low is None:
        return TOO_FEW
    if diff.low > 0:
        return GAIN
    if diff.high < 0:
        return LOSS
    return UNCLEAR

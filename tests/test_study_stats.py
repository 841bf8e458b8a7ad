"""The statistics of bnn-lab-report's study tables against numbers worked by hand and against
scipy's own t-test machinery (a different code path: ttest_1samp / ttest_rel intervals)."""

import math

import pytest
from scipy import stats as scipy_stats

from bnn_lab.report.stats import GAIN, LOSS, TOO_FEW, UNCLEAR, estimate, paired_difference, verdict


def test_mean_std_and_t_interval_by_hand():
    # 1, 2, 3, 4: mean 2.5, sample variance (2.25 + 0.25 + 0.25 + 2.25) / 3 = 5/3,
    # t_{0.975, 3} = 3.182446305 (t table), half width 3.182446305 * sqrt(5/3) / 2 = 2.054260
    est = estimate([1.0, 2.0, 3.0, 4.0])
    assert est.n == 4 and est.mean == pytest.approx(2.5)
    assert est.std == pytest.approx(math.sqrt(5 / 3))
    assert est.low == pytest.approx(2.5 - 2.054260, abs=1e-6)
    assert est.high == pytest.approx(2.5 + 2.054260, abs=1e-6)
    # three seeds: t_{0.975, 2} = 4.302653; 0.80, 0.82, 0.84: std 0.02, half 4.302653 * 0.02 / sqrt(3)
    est = estimate([0.80, 0.82, 0.84])
    assert est.std == pytest.approx(0.02)
    assert est.half_width == pytest.approx(4.302653 * 0.02 / math.sqrt(3), rel=1e-6)


def test_interval_agrees_with_scipy():
    values = [0.8289, 0.8301, 0.8263, 0.8312, 0.8277]
    est = estimate(values)
    ci = scipy_stats.ttest_1samp(values, 0.0).confidence_interval(0.95)
    assert (est.low, est.high) == pytest.approx((ci.low, ci.high), rel=1e-12)


def test_paired_difference_by_hand_and_by_scipy():
    base = {1: 0.80, 2: 0.85, 3: 0.90}
    arm = {1: 0.81, 2: 0.87, 3: 0.90, 4: 0.99}  # seed 4 has no partner: left out
    diff = paired_difference(arm, base)
    # d = 0.01, 0.02, 0.00: mean 0.01, std 0.01, half 4.302653 * 0.01 / sqrt(3) = 0.0248414
    assert diff.n == 3 and diff.mean == pytest.approx(0.01) and diff.std == pytest.approx(0.01)
    assert (diff.low, diff.high) == pytest.approx((0.01 - 0.0248414, 0.01 + 0.0248414), abs=1e-6)
    ci = scipy_stats.ttest_rel([arm[s] for s in (1, 2, 3)], [base[s] for s in (1, 2, 3)]).confidence_interval(0.95)
    assert (diff.low, diff.high) == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert verdict(diff) == UNCLEAR
    # pairing matters: the arms' own intervals overlap, the paired one excludes 0
    base = {1: 0.70, 2: 0.80, 3: 0.90}
    arm = {1: 0.71, 2: 0.82, 3: 0.915}
    paired = paired_difference(arm, base)
    assert estimate(arm.values()).low < estimate(base.values()).high
    assert paired.low > 0 and verdict(paired) == GAIN
    assert verdict(paired_difference(base, arm)) == LOSS


def test_too_few_seeds_give_no_interval():
    one = estimate([0.5])
    assert one.std is None and one.low is None
    assert verdict(paired_difference({1: 0.6}, {1: 0.5})) == TOO_FEW
    assert paired_difference({1: 0.6}, {2: 0.5}) is None

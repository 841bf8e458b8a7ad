"""The model summary against a hand count for ResNet-20 (1W1A, first/last FP)."""

import pytest

from bnn_lab.models import create
from bnn_lab.summary import summarize
from bnn_lab.surgery import binarize


@pytest.fixture(scope="module")
def totals():
    model = create("resnet20", 3, 10, 32)
    binarize(model, "ste", {"activation": "hardtanh"})
    return summarize(model, (3, 32, 32)).totals


def test_parameter_split(totals):
    binary = 6 * 9 * 16 * 16 + (9 * 16 * 32 + 5 * 9 * 32 * 32) + (9 * 32 * 64 + 5 * 9 * 64 * 64) + 16 * 32 + 32 * 64
    fp = 3 * 9 * 16 + 2 * (16 + 6 * 16 + 6 * 32 + 32 + 6 * 64 + 64) + 64 * 10 + 10
    assert totals["binary_params"] == binary == 269824
    assert totals["fp_params"] == fp


def test_deployed_size_and_compression(totals):
    deployed_bytes = totals["binary_params"] / 8 + 4 * totals["fp_params"]
    assert totals["size_deployed_mb"] == pytest.approx(deployed_bytes / 2**20)
    assert totals["compression"] == pytest.approx(4 * totals["params"] / deployed_bytes)


def test_macs_by_hand(totals):
    # 32x32 in stage 1, 16x16 in stage 2, 8x8 in stage 3 (per image)
    stage1 = 6 * (32 * 32 * 16) * (16 * 9)
    stage2 = (16 * 16 * 32) * (16 * 9) + 5 * (16 * 16 * 32) * (32 * 9) + (16 * 16 * 32) * 16
    stage3 = (8 * 8 * 64) * (32 * 9) + 5 * (8 * 8 * 64) * (64 * 9) + (8 * 8 * 64) * 32
    assert totals["binary_macs"] == stage1 + stage2 + stage3
    assert totals["fp_macs"] == (32 * 32 * 16) * (3 * 9) + 64 * 10
    assert totals["ops"] == pytest.approx(totals["fp_macs"] + totals["binary_macs"] / 64)

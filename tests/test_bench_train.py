"""`bnn-lab-bench train` measures both models in one process and reports their ratio."""

import json

from bnn_lab.bench.cli import main


def test_train_bench_json(capsys):
    assert (
        main(
            [
                "train",
                "--arch",
                "resnet20",
                "--estimator",
                "fda",
                "--batch",
                "8",
                "--size",
                "8",
                "--steps",
                "3",
                "--json",
            ]
        )
        == 0
    )
    res = json.loads(capsys.readouterr().out)
    assert res["estimator"] == "fda" and res["input"] == [1, 8, 8]
    assert res["binary_step_ms"] > 0 and res["fp_step_ms"] > 0
    assert abs(res["ratio"] - res["binary_step_ms"] / res["fp_step_ms"]) < 0.01
    assert abs(res["binary_images_per_s"] - 8 / res["binary_step_ms"] * 1e3) < 1
    assert res["heap"] == "keep" and res["rounds"] == 4 and res["steps"] == 4  # at least a step per block
    assert res["block_ratio"] > 0


def test_train_bench_bf16_channels_last(capsys):
    assert (
        main(
            [
                "train",
                "--arch",
                "resnet20",
                "--estimator",
                "ste",
                "--batch",
                "4",
                "--size",
                "8",
                "--steps",
                "2",
                "--precision",
                "bf16",
                "--channels-last",
                "--json",
            ]
        )
        == 0
    )
    res = json.loads(capsys.readouterr().out)
    assert res["precision"] == "bf16" and res["channels_last"] is True and res["compile"] is False
    assert res["binary_step_ms"] > 0 and res["fp_step_ms"] > 0

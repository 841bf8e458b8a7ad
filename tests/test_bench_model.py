"""``bnn-lab-bench model``: packed vs float end to end, with the per-module breakdown."""

import json

import pytest

from bnn_lab.bench.cli import main

SMALL = [
    "model",
    "--arch",
    "resnet20",
    "--size",
    "8",
    "--chans",
    "1",
    "--classes",
    "10",
    "--batch",
    "4",
    "--repeats",
    "2",
    "--rounds",
    "1",
    "--warmup",
    "1",
    "--backend",
    "torch",
]


def test_model_bench_times_both_networks_and_breaks_them_down(capsys):
    assert main(SMALL + ["--profile", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["same_predictions"] is True and res["packed_layers"] == 20 and res["kept_float"] == 0
    assert set(res["batches"]) == {"1", "4"}
    for e in res["batches"].values():
        assert e["speedup"] == pytest.approx(e["float_ms"] / e["packed_ms"], rel=1e-2)
        assert e["packed_p25_ms"] <= e["packed_ms"] <= e["packed_p75_ms"]
        packed, floating = e["profile"]["packed"], e["profile"]["float"]
        assert "PackedBinaryConv2d" in packed and "PackedBinaryConv2d" not in floating
        assert "Conv2d" in floating  # the float network's 19 binary-shaped convs and its stem


def test_model_bench_needs_a_run_or_an_architecture(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["model"])
    assert exc.value.code == 2
    assert "give a run (path=<run dir>) or --arch NAME" in capsys.readouterr().err

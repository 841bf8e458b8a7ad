"""``bnn-lab-bench model``: packed vs float end to end, with the per-module breakdown."""

import json
import os
import time
from pathlib import Path

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
    assert set(res["float_engines"]) == {"torch", "torch-folded", "onnxruntime"}
    for check in res["float_engines"].values():  # the same float network in every engine
        assert check["same_predictions"] and check["max_abs_diff"] < 1e-3
    for e in res["batches"].values():
        assert set(e["ms"]) == {"packed", "torch", "torch-folded", "onnxruntime"}
        for engine, ratio in e["speedup"].items():
            assert ratio == pytest.approx(e["ms"][engine] / e["ms"]["packed"], rel=1e-2, abs=1e-3)
        assert e["best_float"] == min(e["ms"].keys() - {"packed"}, key=e["ms"].get)
        assert e["speedup_vs_best"] == e["speedup"][e["best_float"]]
        assert e["p25_ms"]["packed"] <= e["ms"]["packed"] <= e["p75_ms"]["packed"]
        packed, floating = e["profile"]["packed"], e["profile"]["torch"]
        assert "PackedBinaryConv2d" in packed and "PackedBinaryConv2d" not in floating
        assert "Conv2d" in floating  # the float network's 19 binary-shaped convs and its stem


def test_the_profile_times_forwards_as_the_benchmark_does_without_autograd():
    import torch
    from torch import nn

    from bnn_lab.bench.model import profile

    seen = []

    class Probe(nn.Module):
        def forward(self, x):
            seen.append(torch.is_grad_enabled())  # a dealt convolution splits only without autograd
            return x * 2

    spent = profile(nn.Sequential(nn.Linear(3, 3), Probe()), torch.randn(2, 3), torch.device("cpu"), runs=2)
    assert set(spent) == {"Linear", "Probe", "between modules"}
    assert len(seen) == 3 and not any(seen)  # the warm-up and both timed forwards


def test_model_bench_needs_a_run_or_an_architecture(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["model"])
    assert exc.value.code == 2
    assert "give a run (path=<run dir>) or --arch NAME" in capsys.readouterr().err


def _children() -> set[int]:
    import os
    from pathlib import Path

    tasks = Path(f"/proc/{os.getpid()}/task")
    return {int(c) for t in tasks.iterdir() for c in (t / "children").read_text().split()}


def test_background_loads_run_during_the_block_and_stop_after():
    from bnn_lab.bench.background import running

    before = _children()
    with running(["busy", "busy:1"], settle_s=0.2) as described:
        assert described == ["busy:1", "busy:1"]
        assert len(_children() - before) == 2
    assert _children() == before


def test_model_bench_runs_beside_a_background_load(capsys):
    assert main(SMALL + ["--baselines", "torch", "--load", "busy", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["load"] == ["busy:1"] and set(res["batches"]["1"]["ms"]) == {"packed", "torch"}


@pytest.mark.parametrize(
    "args,message",
    [
        (["--load", "gpu-burn"], "unknown --load 'gpu-burn'; valid: busy, packed-inference, torch-matmul"),
        (["--load", "busy:x"], "--load 'busy:x': THREADS must be a positive integer"),
        (["--baselines", "tensorrt"], "unknown --baselines tensorrt; valid: torch, torch-folded, onnxruntime"),
    ],
)
def test_model_bench_names_the_valid_loads_and_engines(capsys, args, message):
    with pytest.raises(SystemExit) as exc:
        main(SMALL + args)
    assert exc.value.code != 0
    assert message in capsys.readouterr().err


def test_a_load_that_dies_during_the_timing_voids_the_figures():
    import signal

    from bnn_lab.bench.background import running
    from bnn_lab.errors import UserError

    with pytest.raises(UserError, match="busy:1 stopped during the timing"):
        with running(["busy:1"], settle_s=0.2):
            for pid in _children():
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)


def test_no_load_outlives_a_benchmark_that_is_killed(tmp_path):
    import subprocess
    import sys

    code = (
        "import time\n"
        "from bnn_lab.bench.background import running\n"
        "with running(['busy'], settle_s=0.2):\n"
        "    print('started', flush=True)\n"
        "    time.sleep(60)\n"
    )
    bench = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert bench.stdout.readline().strip() == "started"
    children = Path(f"/proc/{bench.pid}/task/{bench.pid}/children").read_text().split()
    assert len(children) == 1
    bench.kill()  # SIGKILL: no finally block runs
    bench.wait()
    deadline = time.time() + 5
    while Path(f"/proc/{children[0]}").exists() and time.time() < deadline:
        time.sleep(0.05)
        subprocess.run(["true"])  # reap nothing; give the kernel a moment
    status = Path(f"/proc/{children[0]}/status")
    assert not status.exists() or "State:\tZ" in status.read_text()

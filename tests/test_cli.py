"""End-to-end runs of the ``bnn-lab`` command on real (tiny) data."""

import json

import pytest

FAST = ["data=digits", "trainer.max_epochs=1", "trainer.enable_progress_bar=false"]


def test_one_epoch_on_digits_writes_metrics_summary_checkpoints_and_wandb(run_cli):
    proc = run_cli(*FAST)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = proc.run_dir
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("test/acc", "test/acc5", "test/loss", "val/acc", "epochs", "wall_time_s", "summary"):
        assert key in metrics
    assert 0.0 <= metrics["test/acc"] <= metrics["test/acc5"] <= 1.0
    assert metrics["epochs"] == 1 and metrics["estimator"] == "ste" and metrics["arch"] == "resnet20"
    assert metrics["summary"]["binary_params"] == 269824
    assert "test/acc" in proc.stdout
    summary = (run_dir / "summary.txt").read_text()
    assert "BinaryConv2d" in summary and "compression" in summary
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert list((run_dir / "checkpoints").glob("best-*.ckpt"))
    assert "estimator:" in (run_dir / "config.yaml").read_text()
    assert list((run_dir / "wandb").glob("offline-run-*")), "W&B should log offline under the run directory"


def test_binary_resnet20_learns_digits(run_cli):
    """A real training curve: 4 epochs of 1W1A ResNet-20 on the 8x8 digits beat chance (0.1) by far."""
    proc = run_cli("data=digits", "trainer.max_epochs=4", "trainer.enable_progress_bar=false", "logger=csv")
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((proc.run_dir / "metrics.json").read_text())
    assert metrics["test/acc"] > 0.5
    import csv

    rows = list(csv.DictReader((proc.run_dir / "csv" / "metrics.csv").open()))
    val = [float(r["val/acc"]) for r in rows if r.get("val/acc")]
    assert len(val) == 4 and val[-1] > val[0]


def test_fda_densenet_on_digits(run_cli):
    proc = run_cli("estimator=fda", "arch=densenet", *FAST, "logger=csv")
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((proc.run_dir / "metrics.json").read_text())
    assert metrics["arch"] == "binary_densenet28" and metrics["estimator"] == "fda"


def test_full_precision_switch(run_cli):
    proc = run_cli("precision=fp", "trainer=debug", "data=digits", "logger=none")
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((proc.run_dir / "metrics.json").read_text())
    assert metrics["precision"] == "fp" and "fp" not in metrics and metrics["summary"]["binary_params"] == 0


@pytest.mark.parametrize(
    "old,new",
    [("fp=true", "precision=fp"), ("binarize.policy.weights_only=true", "precision=bwn"), ("+fp=true", "precision=fp")],
)
def test_a_spelling_of_earlier_versions_is_one_line_naming_the_new_one(run_cli, old, new):
    proc = run_cli(old, "data=digits", "logger=none")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"bnn-lab: error: {old.split('=')[0].lstrip('+')} is no longer a key: write {new} (the one precision key)"
    ]


@pytest.mark.parametrize("group,bad", [("estimator", "nope"), ("arch", "resnet999"), ("data", "mnist")])
def test_unknown_option_is_one_line_listing_valid_ones(run_cli, group, bad):
    proc = run_cli(f"{group}={bad}", "data=digits" if group != "data" else "logger=none")
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert group in lines[0] and bad in lines[0] and "valid" in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout


def test_unknown_option_inside_a_sweep_list(run_cli):
    proc = run_cli("-m", "estimator=ste,fdaa", "data=digits")
    assert proc.returncode == 2 and "fdaa" in proc.stderr and "valid estimator options: adabin, approx" in proc.stderr


def test_missing_dataset_is_a_clean_error(run_cli, tmp_path):
    proc = run_cli("data=cifar10", f"data.root={tmp_path}/none", "data.download=false", "logger=none")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "CIFAR10 not found" in proc.stderr and "data.root" in proc.stderr


def test_debug_env_shows_traceback(run_cli, tmp_path):
    proc = run_cli(
        "data=cifar10",
        f"data.root={tmp_path}/none",
        "data.download=false",
        "logger=none",
        env={"BNN_LAB_DEBUG": "1", "HYDRA_FULL_ERROR": "1"},
    )
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_every_estimator_trains_one_epoch_on_digits(run_cli, tmp_path):
    from bnn_lab import estimators

    names = estimators.names()
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "-m",
        f"estimator={','.join(names)}",
        *FAST,
        "logger=csv",
        f"hydra.sweep.dir={sweep}",
        "binarize.policy.activation=rprelu",
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = sorted(sweep.glob("*/metrics.json"))
    assert len(runs) == len(names)
    seen = {json.loads(p.read_text())["estimator"]: json.loads(p.read_text()) for p in runs}
    assert set(seen) == set(names)
    for name, m in seen.items():
        assert m["epochs"] == 1, name
        if "packed/test_acc" in m:  # packed like every estimator: the kernels agree with the float model
            assert abs(m["packed/test_acc"] - m["test/acc"]) <= 1 / 359 + 1e-9, (
                name,
                m["packed/test_acc"],
                m["test/acc"],
            )
    packed = {name for name, m in seen.items() if "packed/test_acc" in m}
    assert {"ste", "fda", "approx", "recu", "biper", "rsign", "adabin"} <= packed, sorted(set(names) - packed)


@pytest.mark.parametrize(
    "args,expected",
    [
        (["trainer.max_epochs=abc"], "trainer.max_epochs expects an integer"),
        (["optimizer.lr=fast"], "optimizer.lr expects a number"),
        (["foo=1"], "Could not override 'foo'"),
        (["arch=timm"], "arch.name must be set"),
        (["-m", "estimator=ste,fda", "data.batch_size=1.5"], "data.batch_size expects an integer"),
    ],
)
def test_bad_values_fail_in_one_line(run_cli, args, expected):
    proc = run_cli(*args, "data=digits", "logger=none")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], proc.stderr


def test_unwritable_run_directory_fails_in_one_line(run_cli):
    proc = run_cli("data=digits", "logger=none", "hydra.run.dir=/proc/bnn-lab-run")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot write the run directory /proc/bnn-lab-run" in lines[0]


def test_non_finite_loss_stops_with_the_step():
    import torch
    from torch import nn

    from bnn_lab.training.module import ClassificationModule, NonFiniteLossError

    class Broken(nn.Module):
        def forward(self, x):
            return torch.full((x.shape[0], 3), float("nan"))

    module = ClassificationModule(Broken(), 3, {"name": "adam", "lr": 1e-3}, {"name": "none"})
    module.log = lambda *a, **k: None  # no trainer attached
    with pytest.raises(NonFiniteLossError, match="step 0"):
        module.training_step((torch.zeros(2, 1, 4, 4), torch.tensor([0, 1])), 0)

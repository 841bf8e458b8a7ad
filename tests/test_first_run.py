"""What a first ``make run`` prints, read as a new user reads it: bnn-lab's own summary and
results, no library warnings, no Lightning summary table, no progress bars in output that is
not a terminal; and a data mistake ends the run in one line before W&B says anything."""

from __future__ import annotations

import re

import pytest

from bnn_lab.data.fashion_mnist import DEBIAN_DIR

# the default configuration, `make run` with nothing given, on a shorter budget
SHORT = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=21",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
]
LIGHTNING_SUMMARY = ("Total FLOPs", "Trainable params", "┏", "┃ Name")
PROGRESS_BARS = ("\r", "━", "it/s]", "%|")


def third_party_warnings(output: str) -> list[str]:
    """Lines with a Python warning category (UserWarning, FutureWarning...), a warning in
    Lightning's format (``<file>.py:<line>: <message>``), a deprecation, or a library's
    WARNING; bnn-lab's own logged warnings are findings of the run and stay."""
    return [
        line
        for line in output.splitlines()
        if "Warning" in line
        or re.search(r"\.py:\d+: ", line)
        or "deprecat" in line.lower()
        or ("WARNING" in line and "[bnn_lab." not in line)
    ]


@pytest.mark.skipif(not DEBIAN_DIR.is_dir(), reason="needs Debian's dataset-fashion-mnist (.ci/run installs it)")
def test_the_default_run_reads_clean(run_cli):
    proc = run_cli(*SHORT, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    output = proc.stdout + proc.stderr
    assert third_party_warnings(output) == []
    assert not [s for s in LIGHTNING_SUMMARY if s in output], output[-3000:]
    assert not [s for s in PROGRESS_BARS if s in output], "progress bars in output that is not a terminal"
    # what it does print: the data, bnn-lab's summary, one line per epoch, the result
    assert re.search(r"data fashion_mnist: 1x28x28, 10 classes; 55,000 train, 5,000 val, 10,000 test", output)
    assert "compression" in output and "BinaryConv2d" in output
    assert re.search(r"epoch 1/1: .*val/acc \d\.\d{4}", output)
    assert re.search(r"test/acc = \d\.\d{4}", proc.stdout)
    assert list((proc.run_dir / "wandb").glob("offline-run-*"))


@pytest.mark.parametrize(
    "args, expected",
    [
        (["data=cifar10", "data.root={tmp}/nothing", "data.download=false"], "CIFAR10 not found in {tmp}/nothing"),
        (["data=image_folder", "data.root={tmp}/nothing"], "data.root={tmp}/nothing does not exist"),
        (["data=image_folder"], "data.root must be set"),
        (["data=imagenet", "data.root={tmp}"], "has no train/ folder"),
    ],
)
def test_a_data_mistake_is_one_line_before_anything_is_set_up(run_cli, tmp_path, args, expected):
    proc = run_cli(*[a.format(tmp=tmp_path) for a in args])  # the default logger: W&B
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expected.format(tmp=tmp_path) in lines[0], proc.stderr
    assert "wandb" not in (proc.stdout + proc.stderr).lower()
    assert "surgery" not in proc.stdout and "GPU available" not in proc.stdout + proc.stderr
    assert not (proc.run_dir / "wandb").exists()

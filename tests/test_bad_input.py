"""Bad input through the real commands: one line saying what to do, a non-zero status, no
traceback, and nothing that an earlier run saved is overwritten. (Unknown options and keys,
wrong types, a missing dataset, an unwritable run directory and a teacher of another
architecture are in test_cli.py and test_distill.py.)"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import bnn_lab_cli

FAST = ["data=digits", "logger=none", "export.packed=false", "trainer.enable_progress_bar=false"]
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def one_line_error(proc, *expected: str) -> str:
    """The command ends with one error line (library warnings printed while training may come
    before it), status 2, and no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    lines = proc.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith(("bnn-lab: error:", "bnn-lab-eval: error:"))]
    assert errors == lines[-1:], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr + proc.stdout
    for text in expected:
        assert text in lines[-1], lines[-1]
    return lines[-1]


def snapshot(run_dir: Path, skip: tuple[str, ...] = ()) -> dict[str, bytes]:
    return {
        str(p.relative_to(run_dir)): p.read_bytes()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and not str(p.relative_to(run_dir)).startswith(skip)
    }


def test_missing_teacher_checkpoint(run_cli, tmp_path):
    proc = run_cli(*FAST, "distill=kd", f"distill.teacher.ckpt={tmp_path}/teacher.ckpt", env=ONE_THREAD)
    one_line_error(proc, f"teacher checkpoint {tmp_path}/teacher.ckpt does not exist", "drop distill.teacher.ckpt")


def idx_bytes(magic: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    """An IDX file: big-endian magic and dimensions, then the uint8 payload."""
    return b"".join(v.to_bytes(4, "big") for v in (magic, *dims)) + payload


def test_truncated_dataset_file(run_cli, tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    n = 60  # a well-formed label file, and an image file whose header promises n images
    (root / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(2049, (n,), bytes(range(10)) * 6)))
    images = idx_bytes(2051, (n, 28, 28), bytes(n * 28 * 28))
    (root / "train-images-idx3-ubyte").write_bytes(images[: len(images) // 3])  # a download cut short
    proc = run_cli("data=fashion_mnist", f"data.root={root}", "data.download=false", "logger=none", env=ONE_THREAD)
    one_line_error(proc, f"{root}/train-images-idx3-ubyte is truncated or corrupt", "download it again")


@pytest.mark.parametrize(
    "lr,message",
    [
        ("1e38", "the training loss became inf at step"),  # caught in the training step
        ("1e20", "the weights became NaN or infinite by step"),  # caught before a checkpoint is written
    ],
)
def test_non_finite_training_names_the_step_and_keeps_the_last_good_checkpoint(run_cli, lr, message):
    proc = run_cli(
        *FAST, "trainer.max_epochs=1", f"optimizer.lr={lr}", "checkpoint.every_n_train_steps=1", env=ONE_THREAD
    )
    line = one_line_error(proc, message, "lower optimizer.lr")
    step = int(line.split(" step ")[1].split()[0])
    last = proc.run_dir / "checkpoints" / "last.ckpt"
    kept = torch.load(last, map_location="cpu", weights_only=False)  # still there, and loadable
    assert 1 <= kept["global_step"] <= step
    assert all(torch.isfinite(v).all() for v in kept["state_dict"].values() if v.is_floating_point())
    assert not (proc.run_dir / "metrics.json").exists()


def test_wandb_online_without_login_falls_back_to_offline_and_trains(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(
        HOME=str(tmp_path / "home"),
        NETRC=str(tmp_path / "home" / ".netrc"),
        WANDB_SILENT="true",
        PYTHONUNBUFFERED="1",
        **ONE_THREAD,
    )
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        bnn_lab_cli()
        + [
            "data=digits",
            "trainer=debug",
            "export.packed=false",
            "logger=wandb",
            "logger.mode=online",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "W&B: no API key" in proc.stdout + proc.stderr and "logging offline instead" in proc.stdout + proc.stderr
    assert list((run_dir / "wandb").glob("offline-run-*")) and (run_dir / "metrics.json").is_file()


def test_corrupt_packed_model(tmp_path):
    bad = tmp_path / "model.packed.safetensors"
    bad.write_bytes(os.urandom(4096))
    exe = Path(sys.executable).parent / "bnn-lab-eval"
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "bnn_lab.cli.evaluate"]
    proc = subprocess.run(cmd + [f"path={bad}"], capture_output=True, text=True, timeout=300)
    one_line_error(proc, str(bad), "corrupt")


@pytest.mark.slow
def test_nothing_an_earlier_run_saved_is_overwritten(run_cli, tmp_path):
    done = run_cli(*FAST, "trainer=debug", env=ONE_THREAD)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = done.run_dir
    before = snapshot(run_dir)

    # the same folder again without resume=true: refused before Hydra writes anything there
    proc = run_cli(*FAST, "trainer=debug", "optimizer.lr=0.01", env=ONE_THREAD)
    one_line_error(proc, f"{run_dir} already holds a run", f"resume with: bnn-lab resume={run_dir}")
    assert snapshot(run_dir) == before

    # resuming it as another network: refused as well, also before Hydra starts
    proc = run_cli(f"resume={run_dir}", "arch=vgg_small", env=ONE_THREAD)
    one_line_error(proc, "another network or data", "arch.name: 'resnet20' -> 'vgg_small'")
    assert snapshot(run_dir) == before

    # a damaged last.ckpt: one line, and the results are left as they were (config.yaml, the
    # lock file and Hydra's files record each start of a resumed run)
    last = run_dir / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    (run_dir / "metrics.json").unlink()  # a run stopped before its end (a finished one has nothing to resume)
    started = (".hydra", "bnn-lab.log", "config.yaml", ".bnn-lab.lock")
    before = snapshot(run_dir, skip=started)
    proc = run_cli(f"resume={run_dir}", env=ONE_THREAD)
    one_line_error(proc, f"{last} cannot be read", "move it away")
    assert snapshot(run_dir, skip=started) == before

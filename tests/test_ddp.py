"""trainer=ddp: Lightning DDP with 2 CPU processes (gloo) on digits.

Lightning's DDP launcher starts the other ranks by re-executing ``sys.argv`` (the bnn-lab
command line, with Hydra's run directory pinned), so the run goes through the CLI in a
subprocess: inside pytest it would re-run pytest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BUDGET = [
    "data=digits",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=4",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "trainer.enable_progress_bar=false",
]


def test_ddp_preset():
    cfg = yaml.safe_load((REPO / "conf" / "trainer" / "ddp.yaml").read_text())
    assert cfg["strategy"] == "ddp" and cfg["devices"] >= 2 and cfg["num_nodes"] == 1


def test_ddp_two_cpu_processes(tmp_path):
    run_dir = tmp_path / "run"
    exe = Path(sys.executable).parent / "bnn-lab"
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "bnn_lab.cli.train"]
    cmd += [
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        *BUDGET,
        "logger=wandb",
        f"hydra.run.dir={run_dir}",
    ]
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "OMP_NUM_THREADS": "1",
    }
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    # two ranks really trained together
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in out and "GLOBAL_RANK: 1, MEMBER: 2/2" in out, out[-3000:]
    assert (run_dir / "train_ddp_process_1.log").is_file()  # rank 1 ran in the same run directory
    # no rank failed (a failing rank 1 does not change rank 0's exit status)
    assert "Error executing job" not in out and "Traceback" not in out, out[-4000:]
    # epoch metrics are reduced over the ranks (Lightning warns about every metric that is not)
    assert "sync_dist=True" not in out, [line for line in out.splitlines() if "sync_dist" in line]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and 0.0 <= metrics["test/acc"] <= 1.0 and metrics["val/acc"] is not None
    assert not list(run_dir.rglob("*.tmp"))
    # W&B from rank 0 only: one run
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1
    assert list((run_dir / "checkpoints").glob("best-*.ckpt")) and (run_dir / "checkpoints" / "last.ckpt").is_file()

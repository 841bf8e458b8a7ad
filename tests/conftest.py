import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.pop("BNN_LAB_DATA", None)


def _share_the_cores() -> None:
    """Under pytest-xdist, each worker (and the runs it starts) gets cores / workers threads.

    Otherwise every worker's torch and numba start one thread per core and the workers
    oversubscribe the machine. A test that needs a thread count sets its own."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        threads = str(max(1, len(os.sched_getaffinity(0)) // workers))
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
            os.environ.setdefault(var, threads)


_share_the_cores()


def bnn_lab_cli() -> list[str]:
    exe = shutil.which("bnn-lab", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "bnn_lab.cli.train"]


@pytest.fixture
def run_cli(tmp_path):
    """Runs ``bnn-lab ARGS`` in a subprocess with its run directory under tmp_path."""

    def run(*args: str, run_dir: Path | None = None, env: dict | None = None, timeout: int = 600):
        run_dir = run_dir or tmp_path / "run"
        cmd = bnn_lab_cli() + list(args)
        if not any(a.startswith("hydra.run.dir=") for a in args) and "-m" not in args:
            cmd.append(f"hydra.run.dir={run_dir}")
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=timeout, env=full_env)
        proc.run_dir = run_dir
        return proc

    return run

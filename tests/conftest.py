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

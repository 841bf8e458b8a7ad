"""The wheel works outside the repository: built offline from the sources, installed into a
fresh virtualenv, `bnn-lab` trains from an empty folder with the configs it carries."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = ["pyproject.toml", "setup.py", "README.md", "bnn_lab", "conf"]


def _run(cmd, **kw):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300, **kw)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_wheel_installed_in_a_fresh_virtualenv_trains_from_an_empty_folder(tmp_path):
    src = tmp_path / "src"  # a copy: building in the checkout would leave build/ and *.egg-info there
    src.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, src / name)
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            tmp_path / "dist",
            src,
        ]
    )
    (wheel,) = (tmp_path / "dist").glob("bnn_lab-*.whl")

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            python,
            "install",
            "--no-deps",
            "--no-index",
            "--ignore-installed",
            wheel,
        ]
    )
    # The dependencies (torch, lightning...) come from this interpreter's site-packages as a plain
    # path entry: its .pth files, among them the development install of bnn_lab, are not run.
    purelib = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (purelib / "zz_bnn_lab_dependencies.pth").write_text("\n".join(sorted(deps)) + "\n")

    empty = tmp_path / "elsewhere"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = _run(
        [python, "-c", "import bnn_lab.cli.train as t; print(t.__file__); print(t.CONF_DIR)"], cwd=empty, env=env
    ).stdout.split()
    assert all(Path(p).is_relative_to(purelib / "bnn_lab") for p in where), where

    _run(
        [
            venv / "bin" / "bnn-lab",
            "data=digits",
            "trainer.max_epochs=1",
            "logger=none",
            "precision=fp",
            "trainer.enable_progress_bar=false",
        ],
        cwd=empty,
        env={**env, "WANDB_MODE": "offline"},
    )
    (metrics_file,) = (empty / "outputs").glob("*/*/metrics.json")
    metrics = json.loads(metrics_file.read_text())
    assert metrics["data"] == "digits" and metrics["epochs"] == 1
    assert metrics["test/acc"] > 0.5  # chance is 0.1 on the ten digits

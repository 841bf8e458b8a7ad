"""Hydra multirun: a local grid, an Optuna study (hparams_search=optuna), submitit jobs
(hydra/launcher=submitit_local, the SLURM preset's sbatch script)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
TINY = ["data=digits", "trainer=debug", "trainer.enable_progress_bar=false"]


def bnn_lab(*args: str, cwd: Path, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "bnn-lab"
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "bnn_lab.cli.train"]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true", **(env or {})}
    return subprocess.run(cmd + list(args), cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env)


def job_metrics(sweep_dir: Path) -> dict[str, dict]:
    """{job folder name: metrics.json} for the jobs of a multirun."""
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/metrics.json"))}


_GRID: dict[str, Path] = {}  # test_report imports the fixture: one multirun for both modules


@pytest.fixture(scope="session")
def digits_grid(tmp_path_factory) -> Path:
    """`bnn-lab -m estimator=ste,fda arch=resnet20` on digits with csv logs: a 2x1 grid, also
    the input of the report tests."""
    if "sweep" not in _GRID:
        root = tmp_path_factory.mktemp("grid")
        sweep = root / "multirun"
        proc = bnn_lab(
            "-m", "estimator=ste,fda", "arch=resnet20", *TINY, "logger=csv", f"hydra.sweep.dir={sweep}", cwd=root
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        _GRID["sweep"] = sweep
    return _GRID["sweep"]


def test_local_grid_runs_every_combination(digits_grid):
    jobs = job_metrics(digits_grid)
    assert len(jobs) == 2, sorted(p.name for p in digits_grid.iterdir())
    assert {(m["estimator"], m["arch"]) for m in jobs.values()} == {("ste", "resnet20"), ("fda", "resnet20")}
    for name, m in jobs.items():
        job = digits_grid / name
        assert re.fullmatch(r"\d_resnet20_(ste|fda)_digits", name)
        assert m["epochs"] == 1 and 0.0 <= m["val/acc"] <= 1.0 and m["data"] == "digits"
        assert (job / "csv" / "metrics.csv").is_file() and (job / "config.yaml").is_file()
        assert yaml.safe_load((job / "config.yaml").read_text())["estimator"]["name"] == m["estimator"]
    assert (digits_grid / "multirun.yaml").is_file()


def _hparams_search_arg() -> str:
    """`hparams_search=optuna` once conf/config.yaml lists the group, `+hparams_search=...` before."""
    defaults = yaml.safe_load((CONF / "config.yaml").read_text())["defaults"]
    listed = any(isinstance(d, dict) and any(k.split(" ")[-1] == "hparams_search" for k in d) for d in defaults)
    return "hparams_search=optuna" if listed else "+hparams_search=optuna"


def test_optuna_study_maximizes_val_acc(tmp_path):
    sweep = tmp_path / "study"
    proc = bnn_lab(
        "-m",
        _hparams_search_arg(),
        "hydra.sweeper.n_trials=2",
        *TINY,
        "logger=wandb",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = job_metrics(sweep)
    assert len(jobs) == 2
    trials = []
    for name in jobs:
        cfg = yaml.safe_load((sweep / name / "config.yaml").read_text())
        hydra_cfg = yaml.safe_load((sweep / name / ".hydra" / "hydra.yaml").read_text())["hydra"]
        assert hydra_cfg["sweeper"]["direction"] == "maximize"
        assert hydra_cfg["sweeper"]["_target_"].endswith("OptunaSweeper")
        lr, wd, warmup = cfg["optimizer"]["lr"], cfg["optimizer"]["weight_decay"], cfg["scheduler"]["warmup_epochs"]
        assert 1e-4 <= lr <= 0.02 and 1e-6 <= wd <= 1e-3 and 0.0 <= warmup <= 1.0
        trials.append((lr, wd, warmup))
        # every trial is its own W&B run, in its own directory (not the first trial's run)
        assert len(list((sweep / name / "wandb").glob("offline-run-*"))) == 1, name
    assert trials[0] != trials[1], "the sampler proposes new values for each trial"
    ids = {p.name.rsplit("-", 1)[-1] for p in sweep.glob("*/wandb/offline-run-*")}
    assert len(ids) == 2
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(max(m["val/acc"] for m in jobs.values()))
    assert set(results["best_params"]) == {"optimizer.lr", "optimizer.weight_decay", "scheduler.warmup_epochs"}


def test_submitit_local_launcher_runs_each_job_as_a_process(tmp_path):
    sweep = tmp_path / "sweep"
    proc = bnn_lab(
        "-m",
        "hydra/launcher=submitit_local",
        "estimator=ste,fda",
        *TINY,
        "logger=csv",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = job_metrics(sweep)
    assert {m["estimator"] for m in jobs.values()} == {"ste", "fda"} and len(jobs) == 2
    # each job ran in a submitit process: its own folder with the job's log and pickled result
    logs = sorted((sweep / ".submitit").glob("*/*_log.out"))
    assert len(logs) == 2, sorted(p.relative_to(sweep) for p in (sweep / ".submitit").rglob("*"))
    assert len(list((sweep / ".submitit").glob("*/*_result.pkl"))) == 2
    assert any("test/acc =" in p.read_text() for p in logs)


def _sbatch_script(tmp_path: Path, overrides: list[str]) -> str:
    """The sbatch script the SLURM launcher submits for a 2-job multirun (no cluster needed:
    the submission is captured instead of calling sbatch)."""
    import submitit.slurm.slurm as submitit_slurm
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "srun").write_text("#!/bin/sh\nexit 1\n")  # submitit checks that it is on a SLURM host
    (fake_bin / "srun").chmod(0o755)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "config", overrides=[*overrides, f"hydra.sweep.dir={tmp_path / 'sweep'}"], return_hydra_config=True
        )
    launcher = instantiate(cfg.hydra.launcher)
    launcher.setup(hydra_context=None, task_function=lambda c: None, config=cfg)
    captured = {}

    class Submitted(Exception):
        pass

    def submit(self, command):
        captured["script"] = self._make_submission_file_text(command, "test")
        raise Submitted

    with (
        mock.patch.dict(os.environ, {"PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}"}),
        mock.patch.object(submitit_slurm.SlurmExecutor, "_submit_command", submit),
        pytest.raises(Submitted),
    ):
        launcher.launch([["estimator=ste"], ["estimator=fda"]], initial_job_idx=0)
    return captured["script"]


def test_slurm_preset_sbatch_script(tmp_path):
    script = _sbatch_script(
        tmp_path,
        [
            "hydra/launcher=slurm",
            "hydra.launcher.partition=gpu-a100",
            "hydra.launcher.gpus_per_node=4",
            "hydra.launcher.tasks_per_node=4",
            "trainer=ddp",
            "trainer.devices=4",
        ],
    )
    lines = set(script.splitlines())
    for expected in (
        "#SBATCH --array=0-1%2",
        "#SBATCH --partition=gpu-a100",
        "#SBATCH --gpus-per-node=4",
        "#SBATCH --ntasks-per-node=4",
        "#SBATCH --time=720",
        "#SBATCH --nodes=1",
        # requeueing belongs to submitit: USR2 before the time limit (Lightning listens to USR1)
        "#SBATCH --signal=USR2@120",
    ):
        assert expected in lines, f"{expected} missing from\n{script}"
    assert re.search(r"^srun .*-m submitit\.core\._submit ", script, re.M)  # one task per GPU through srun

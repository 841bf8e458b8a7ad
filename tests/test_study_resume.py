"""A study stopped in the middle and run again with ``resume=true``: the finished runs are
skipped (their files untouched), the run that was cut continues bit-exactly, the rest start;
the result is the unbroken study's, run by run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_resume import STEPS_PER_EPOCH, assert_same_run, bnn_lab, kill_at_mid_epoch_checkpoint, start

STUDY = [
    "-m",
    "experiment=study_fda",
    "arm=fda_ste,fda_fourier",
    "seed=1",
    "data=digits",
    "study.epochs=2",
    "study.train_batches=1.0",
    "export.packed=false",
    "trainer.enable_progress_bar=false",
    "checkpoint.every_n_train_steps=5",
]


def jobs(sweep: Path) -> list[Path]:
    return sorted(
        (p for p in sweep.iterdir() if p.is_dir() and p.name[0].isdigit()), key=lambda p: int(p.name.split("_")[0])
    )


def kill_in_second_run(sweep: Path, tmp_path: Path) -> int:
    """SIGKILL the study right after a mid-epoch step checkpoint of its second run."""
    err = tmp_path / "killed.err"
    proc = start(*STUDY, f"hydra.sweep.dir={sweep}", cwd=tmp_path, stderr=err)
    return kill_at_mid_epoch_checkpoint(
        proc, lambda: next(sweep.glob("1_*/checkpoints/last.ckpt"), None), STEPS_PER_EPOCH, err
    )


@pytest.mark.slow
def test_a_killed_study_resumed_gives_the_unbroken_study(tmp_path):
    reference = tmp_path / "reference"
    proc = bnn_lab(*STUDY, f"hydra.sweep.dir={reference}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]

    sweep = tmp_path / "killed"
    kill_in_second_run(sweep, tmp_path)
    first, second = jobs(sweep)
    assert (first / "metrics.json").is_file() and not (second / "metrics.json").exists()
    finished = {p: p.read_bytes() for p in first.rglob("*") if p.is_file() and ".hydra" not in p.parts}

    proc = bnn_lab(*STUDY, f"hydra.sweep.dir={sweep}", "resume=true", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"{first} already finished with this configuration" in (first / "bnn-lab.log").read_text()
    assert f"resuming stage train from {second}/checkpoints/last.ckpt" in (second / "bnn-lab.log").read_text()
    # the finished run was not touched (config.yaml, its log and the lock record each start)
    started = ("config.yaml", "bnn-lab.log", ".bnn-lab.lock")
    assert {p: p.read_bytes() for p in finished if p.name not in started} == {
        p: b for p, b in finished.items() if p.name not in started
    }
    for a, b in zip(jobs(reference), jobs(sweep), strict=True):
        assert a.name == b.name
        assert_same_run(a, b)
    assert json.loads((second / "metrics.json").read_text())["global_steps"] == 2 * STEPS_PER_EPOCH


def test_only_a_finished_run_of_the_same_configuration_is_skipped(tmp_path):
    from omegaconf import OmegaConf

    from bnn_lab.training.safety.run_dir import finished_with

    cfg = OmegaConf.create(
        {"arch": {"name": "resnet20"}, "seed": 1, "resume": False, "trainer": {"max_epochs": 2}, "precision": "1w1a"}
    )
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    assert not finished_with(tmp_path, cfg)  # no metrics.json: stopped before its end
    (tmp_path / "metrics.json").write_text("{}")
    assert finished_with(tmp_path, OmegaConf.merge(cfg, {"resume": True}))
    assert not finished_with(tmp_path, OmegaConf.merge(cfg, {"resume": True, "trainer": {"max_epochs": 3}}))
    # continued with a checkpoint interval (what the docs advise): still finished, nothing to train
    interval = {"resume": True, "checkpoint": {"every_n_train_steps": 60}}
    assert finished_with(tmp_path, OmegaConf.merge(cfg, interval))
    assert not finished_with(tmp_path, OmegaConf.merge(cfg, interval, {"seed": 2}))


def test_a_sweep_skips_the_run_another_process_is_training(tmp_path):
    """The same study started twice shares its runs: a job whose folder another live process holds is
    skipped (not an error that ends the sweep), and the next command with resume=true trains it."""
    import os

    from bnn_lab.training.safety.run_lock import run_lock

    sweep = tmp_path / "sweep"
    busy = sweep / "0_fda_fda_ste_s1"
    study = [*STUDY, "study.epochs=1", f"hydra.sweep.dir={sweep}", "resume=true"]
    with run_lock(busy):  # this test process stands for the other command, training job 0
        proc = bnn_lab(*study, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert f"bnn-lab: skipped {busy.name}: process {os.getpid()} is training {busy}" in proc.stdout
        first, second = jobs(sweep)
        assert first == busy and not (first / "metrics.json").exists()
        assert json.loads((second / "metrics.json").read_text())["global_steps"] == STEPS_PER_EPOCH
    proc = bnn_lab(*study, cwd=tmp_path)  # the other process is gone: its run is trained now
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "skipped" not in proc.stdout
    assert json.loads((first / "metrics.json").read_text())["global_steps"] == STEPS_PER_EPOCH
    assert f"{second} already finished with this configuration" in (second / "bnn-lab.log").read_text()

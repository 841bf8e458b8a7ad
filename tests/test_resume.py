"""Crash-safe training, end to end: real ``bnn-lab`` processes on digits.

A run killed with SIGKILL in the middle of an epoch, or stopped by SIGTERM, and then resumed
in the same run directory must end exactly where the same run ends when nothing stops it:
same metrics, bit-identical weights and optimizer state. The run uses dropout (the global torch
RNG) and EDE (an estimator whose gradient follows the training progress), so a resume that
lost the RNG states, the position in the epoch or the step count would end elsewhere. And the
same seed twice gives the same run (CPU). A run whose latent binary weights follow a
Bop-shaped sign-flipping optimizer, or Bop itself, while Adam trains the rest resumes
bit-identical too.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from conftest import bnn_lab_cli

RUN = [
    "data=digits",
    "arch=resnet20",
    "estimator=ede",
    "+arch.kwargs.drop_rate=0.2",
    "trainer.max_epochs=3",
    "logger=csv",
    "export.packed=false",
    "trainer.enable_progress_bar=false",
    "checkpoint.every_n_train_steps=5",
]
STEPS_PER_EPOCH = 41  # digits: 1294 training images (1797 - 359 test - 144 validation), batches of 32
# Adam on the real-valued parameters, tests/sign_flip_optimizer.py (imported as a plugin) on the
# latent binary weights, with a constant schedule of its own
SIGN_FLIP = [
    "plugins=[sign_flip_optimizer]",
    "optimizer.latent={name:sign_flip,lr:0.1,threshold:0.0003,scheduler:{name:none}}",
]
# one thread: the runs of a comparison use the same summation order, and 2-core machines shared
# with other jobs run much faster that way; tests/ on the path for the plugin
ENV = {
    **os.environ,
    "PYTHONUNBUFFERED": "1",
    "OMP_NUM_THREADS": "1",
    "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")])),
}


def bnn_lab(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(bnn_lab_cli() + list(args), cwd=cwd, capture_output=True, text=True, timeout=600, env=ENV)


def start(*args: str, cwd: Path, stderr: Path) -> subprocess.Popen:
    """In the background, stderr into a file (a pipe nobody reads could fill up and stall it)."""
    with open(stderr, "w") as err:
        return subprocess.Popen(bnn_lab_cli() + list(args), cwd=cwd, stdout=subprocess.DEVNULL, stderr=err, env=ENV)


def ckpt(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def assert_same_run(a: Path, b: Path) -> None:
    """Same metrics, bit-identical tested weights, and the same final training state."""
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    for key in ("test/acc", "test/acc5", "test/loss", "val/acc", "global_steps", "epochs"):
        assert ma[key] == mb[key], (key, ma[key], mb[key])
    assert Path(ma["best_checkpoint"]).name == Path(mb["best_checkpoint"]).name  # the same epoch was the best
    wa, wb = torch.load(a / "final_weights.pt"), torch.load(b / "final_weights.pt")
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa), [k for k in wa if not torch.equal(wa[k], wb[k])][:5]
    la, lb = ckpt(a / "checkpoints" / "last.ckpt"), ckpt(b / "checkpoints" / "last.ckpt")
    assert all(torch.equal(la["state_dict"][k], lb["state_dict"][k]) for k in la["state_dict"])
    sa, sb = la["optimizer_states"][0]["state"], lb["optimizer_states"][0]["state"]
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[i][name], sb[i][name]) for i in sa for name in sa[i])
    assert la["lr_schedulers"] == lb["lr_schedulers"]


def csv_rows(run_dir: Path) -> list[dict[str, str]]:
    """The rows of csv/metrics.csv, each without its empty cells, by step."""
    with open(run_dir / "csv" / "metrics.csv", newline="") as file:
        rows = [{k: v for k, v in row.items() if v} for row in csv.DictReader(file)]
    return sorted(rows, key=lambda r: (float(r["step"]), sorted(r)))


def unbroken(run_dir: Path, *args: str, learns: bool = True) -> Path:
    """The run that nothing stops."""
    proc = bnn_lab(*RUN, *args, f"hydra.run.dir={run_dir}", cwd=run_dir.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["global_steps"] == 3 * STEPS_PER_EPOCH
    if learns:
        assert metrics["test/acc"] > 0.3, "the run must learn something for the comparisons to mean anything"
    return run_dir


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    return unbroken(tmp_path_factory.mktemp("reference") / "run")


def kill_at_mid_epoch_checkpoint(proc: subprocess.Popen, find_last, steps_per_epoch: int, err: Path) -> int:
    """SIGKILL ``proc`` right after the checkpoint ``find_last()`` (None until it exists) holds a
    step inside the 2nd epoch or later; returns that step."""
    killed_at = None
    try:
        deadline = time.time() + 300
        while killed_at is None and time.time() < deadline:
            assert proc.poll() is None, f"the run ended before it could be killed: {err.read_text()[-2000:]}"
            time.sleep(0.02)
            last = find_last()
            if last is None:
                continue
            os.kill(proc.pid, signal.SIGSTOP)  # freeze it wherever it is, then look at its checkpoint
            step = ckpt(last)["global_step"]
            if step > steps_per_epoch and step % steps_per_epoch:  # a step checkpoint inside the 2nd epoch or later
                os.kill(proc.pid, signal.SIGKILL)
                killed_at = step
            else:
                os.kill(proc.pid, signal.SIGCONT)
    finally:
        if proc.poll() is None and killed_at is None:
            proc.kill()
        proc.wait()
    assert killed_at is not None, "no mid-epoch step checkpoint within the time limit"
    assert proc.returncode == -signal.SIGKILL
    return killed_at


def kill_mid_epoch(
    run_dir: Path, tmp_path: Path, *args: str, run: list[str] = RUN, steps_per_epoch: int = STEPS_PER_EPOCH
) -> int:
    """Start ``bnn-lab *run *args`` and SIGKILL it right after a step checkpoint inside its 2nd
    epoch or later; returns the step of that checkpoint."""
    last = run_dir / "checkpoints" / "last.ckpt"
    err = tmp_path / f"{run_dir.name}.err"
    proc = start(*run, *args, f"hydra.run.dir={run_dir}", cwd=tmp_path, stderr=err)
    killed_at = kill_at_mid_epoch_checkpoint(proc, lambda: last if last.is_file() else None, steps_per_epoch, err)
    assert not (run_dir / "metrics.json").exists()
    kept = ckpt(last)  # whatever instant the kill hit, last.ckpt is a whole checkpoint
    assert kept["global_step"] % steps_per_epoch and kept["global_step"] >= killed_at
    return killed_at


def test_same_seed_twice_gives_identical_metrics_and_weights(reference, tmp_path):
    twin = tmp_path / "twin"
    proc = bnn_lab(*RUN, f"hydra.run.dir={twin}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_run(reference, twin)


def test_sigkill_mid_epoch_then_resume_ends_bit_identical(reference, tmp_path):
    run_dir = tmp_path / "killed"
    last = run_dir / "checkpoints" / "last.ckpt"
    kill_mid_epoch(run_dir, tmp_path)

    proc = bnn_lab(f"resume={run_dir}", cwd=tmp_path)  # repeats the run's own overrides
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"resuming stage train from {last}" in proc.stdout + proc.stderr
    # the epoch it continued is timed from the resume (Lightning calls no epoch-start hook then)
    assert re.search(r"epoch \d/3: .* \(\d+s since resuming at step \d+\)", proc.stdout + proc.stderr)
    assert not list(run_dir.rglob("*.partial")), "temporary files of the killed write are cleaned up"
    assert_same_run(reference, run_dir)
    # the log continues the stopped run's: every row of the unbroken run, none twice
    assert csv_rows(run_dir) == csv_rows(reference)


def killed_and_resumed_like_unbroken(tmp_path: Path, name: str, *args: str, learns: bool = True) -> tuple[Path, Path]:
    """The run with ``args`` unbroken, and the same run SIGKILLed mid-epoch and resumed:
    asserts that they end the same; returns both run directories."""
    ref = unbroken(tmp_path / f"{name}_unbroken", *args, learns=learns)
    run_dir = tmp_path / f"{name}_killed"
    kill_mid_epoch(run_dir, tmp_path, *args)
    proc = bnn_lab(f"resume={run_dir}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_run(ref, run_dir)
    return ref, run_dir


def test_sign_flip_on_latent_weights_with_adam_on_the_rest_resumes_bit_identical(reference, tmp_path):
    """The Bop-shaped check: two optimizers in one run, killed with SIGKILL mid-epoch and
    resumed, end bit-identical to the same run unbroken (weights, both optimizers' states).
    Thousands of signs flip per epoch, but on digits the flips need more than 3 epochs to
    lift the accuracy, so this run is not asked to learn; that it repeats itself bit for bit
    through the kill, flips and momentum included, is the point. (The real Bop: the next test.)"""
    ref, run_dir = killed_and_resumed_like_unbroken(tmp_path, "sign_flip", *SIGN_FLIP, learns=False)
    saved = ckpt(run_dir / "checkpoints" / "last.ckpt")["optimizer_states"][0]
    real, latent = saved["param_groups"]
    assert "betas" in real and "threshold" not in real and "betas" not in latent
    assert latent["threshold"] == 0.0003 and latent["lr"] == 0.1  # its own constant schedule
    assert all(set(saved["state"][i]) == {"momentum"} for i in latent["params"])
    assert all(saved["state"][i]["momentum"].abs().sum() > 0 for i in latent["params"])
    assert all(set(saved["state"][i]) >= {"exp_avg", "exp_avg_sq"} for i in real["params"] if i in saved["state"])
    # the latent weights were trained by the sign flips, not by Adam
    w_flip, w_adam = torch.load(ref / "final_weights.pt"), torch.load(reference / "final_weights.pt")
    assert not torch.equal(w_flip["layer1.0.conv1.weight"], w_adam["layer1.0.conv1.weight"])


def test_bop_on_binary_weights_with_adam_on_the_rest_resumes_bit_identical(tmp_path):
    """``optimizer=bop``: Bop (its defaults; gamma follows the run's cosine schedule) on the
    +-1 weights, Adam on the rest, killed mid-epoch and resumed, ends bit-identical to the
    unbroken run; Bop's gradient averages are in the checkpoint."""
    ref, run_dir = killed_and_resumed_like_unbroken(tmp_path, "bop", "optimizer=bop")
    saved = ckpt(run_dir / "checkpoints" / "last.ckpt")["optimizer_states"][0]
    real, latent = saved["param_groups"]
    assert "betas" in real and latent["threshold"] == 1e-8 and "betas" not in latent
    assert latent["initial_lr"] == 1e-4 and latent["lr"] == 0.0  # gamma, driven to 0 by the cosine schedule
    assert all(
        set(saved["state"][i]) == {"momentum"} and saved["state"][i]["momentum"].abs().sum() > 0
        for i in latent["params"]
    )
    weights = torch.load(ref / "final_weights.pt")
    assert weights["layer1.0.conv1.weight"].abs().eq(1).all()


def test_sigterm_saves_at_the_batch_end_exits_143_and_resumes_bit_identical(reference, tmp_path):
    """SIGTERM (what SLURM sends at preemption or the time limit): the run finishes its batch,
    writes last.ckpt there, says how to resume and exits with 143. Step checkpoints are off
    here, so a mid-epoch last.ckpt can only come from the SIGTERM. W&B logs offline, and the
    resumed run continues the same W&B run."""
    run_dir = tmp_path / "terminated"
    last = run_dir / "checkpoints" / "last.ckpt"
    args = [a for a in RUN if not a.startswith(("checkpoint.", "logger="))] + ["logger=wandb"]
    err = tmp_path / "terminated.err"
    proc = start(*args, f"hydra.run.dir={run_dir}", cwd=tmp_path, stderr=err)
    deadline = time.time() + 300
    while not last.is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)  # the first epoch-end checkpoint: training is in its second epoch now
    assert proc.poll() is None, f"the run ended before SIGTERM: {err.read_text()[-2000:]}"
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=300)
    stderr = err.read_text()
    assert proc.returncode == 143, stderr[-3000:]
    message = stderr.strip().splitlines()[-1]
    assert message.startswith("bnn-lab: stopped by SIGTERM at step "), stderr[-3000:]
    assert f"resume with: bnn-lab resume={run_dir}" in message
    assert "Traceback" not in stderr
    step = int(message.split("at step ")[1].split()[0])
    saved = ckpt(last)
    assert saved["global_step"] == step and step % STEPS_PER_EPOCH, (step, saved["global_step"])
    assert not (run_dir / "metrics.json").exists()

    proc = bnn_lab(*args, "resume=true", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_run(reference, run_dir)  # step checkpoints (every 5 steps there) change nothing
    run_id = (run_dir / "wandb_id.txt").read_text().strip()
    segments = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(segments) == 2 and all(p.name.endswith(f"-{run_id}") for p in segments), segments


@pytest.mark.slow
def test_a_recipe_stopped_between_stages_resumes_bit_identical(tmp_path, monkeypatch):
    """Teacher, then student: stopped after the teacher stage, the resumed run skips it and
    must hand the student the random stream the unbroken run had there (the student's
    initialization and dropout draw from it), not the one of a fresh process."""
    from hydra import compose, initialize_config_dir

    from bnn_lab.training import run as run_module

    def cfg(*extra):
        with initialize_config_dir(config_dir=str(Path(__file__).resolve().parents[1] / "conf"), version_base="1.3"):
            return compose(
                config_name="config",
                overrides=[
                    "data=digits",
                    "distill=kd",
                    "distill.teacher.cache=false",
                    "+arch.kwargs.drop_rate=0.2",
                    "trainer.max_epochs=1",
                    "trainer.limit_train_batches=6",
                    "trainer.limit_val_batches=2",
                    "trainer.limit_test_batches=2",
                    "logger=none",
                    "export.packed=false",
                    "trainer.enable_progress_bar=false",
                    *extra,
                ],
            )

    run_module.train(cfg(), tmp_path / "unbroken")
    real_run = run_module._StageRunner.run

    def stops_after_the_teacher(self, index, stage, n, previous):
        if stage.name == "student":
            raise KeyboardInterrupt
        return real_run(self, index, stage, n, previous)

    monkeypatch.setattr(run_module._StageRunner, "run", stops_after_the_teacher)
    with pytest.raises(KeyboardInterrupt):
        run_module.train(cfg(), tmp_path / "stopped")
    monkeypatch.setattr(run_module._StageRunner, "run", real_run)
    assert (tmp_path / "stopped/stages/0_teacher/metrics.json").is_file()
    run_module.train(cfg("resume=true"), tmp_path / "stopped")
    assert_same_run(tmp_path / "unbroken/stages/1_student", tmp_path / "stopped/stages/1_student")

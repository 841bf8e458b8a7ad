"""Files from elsewhere are data: a checkpoint whose pickle would run code is refused before the
code runs, as a teacher, as a resume checkpoint and as a network a loss term loads; only an
explicit ``distill.teacher.trust=true`` loads it with the full pickle. Damaged metrics files are
refused in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO
from test_bad_input import FAST, ONE_THREAD, one_line_error

from bnn_lab.errors import UserError
from bnn_lab.files import RefusedFile, load_checkpoint, read_json


class Payload:
    """Unpickling this calls ``os.system(command)``: what a malicious checkpoint does."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def malicious_checkpoint(path: Path, marker: Path, like: dict | None = None) -> Path:
    """A checkpoint (``like``'s content, else a plausible one) that creates ``marker`` when loaded."""
    ckpt = dict(like) if like is not None else {"state_dict": {}, "bnn_lab": {"arch": "resnet20", "mode": "fp"}}
    ckpt["hyper_parameters"] = Payload(f"touch {marker}")
    torch.save(ckpt, path)
    return path


def test_the_payload_runs_when_loaded_with_the_full_pickle(tmp_path):
    """The check below is meaningful: the same file does run its code under weights_only=False."""
    marker = tmp_path / "PWNED"
    file = malicious_checkpoint(tmp_path / "evil.ckpt", marker)
    torch.load(file, weights_only=False)
    assert marker.exists()


def test_load_checkpoint_refuses_code_and_names_what_it_would_call(tmp_path):
    marker = tmp_path / "PWNED"
    file = malicious_checkpoint(tmp_path / "evil.ckpt", marker)
    with pytest.raises(RefusedFile, match=r"refused: it would call posix\.system.*loaded as data") as caught:
        load_checkpoint(file, what="teacher checkpoint", trust_hint="add distill.teacher.trust=true")
    assert "add distill.teacher.trust=true" in str(caught.value) and "\n" not in str(caught.value)
    assert not marker.exists()
    load_checkpoint(file, trust=True)  # the explicit opt-in
    assert marker.exists()


def test_load_checkpoint_reads_plain_data_and_refuses_damage(tmp_path):
    state = {"state_dict": {"w": torch.arange(6.0).reshape(2, 3)}, "global_step": 7, "loops": {"a": [1, (2, 3)]}}
    torch.save(state, tmp_path / "ok.ckpt")
    loaded = load_checkpoint(tmp_path / "ok.ckpt")
    assert torch.equal(loaded["state_dict"]["w"], state["state_dict"]["w"]) and loaded["loops"] == state["loops"]
    (tmp_path / "cut.ckpt").write_bytes((tmp_path / "ok.ckpt").read_bytes()[:300])
    with pytest.raises(RefusedFile, match="cannot be read"):
        load_checkpoint(tmp_path / "cut.ckpt")
    with pytest.raises(RefusedFile, match="does not exist"):
        load_checkpoint(tmp_path / "none.ckpt")


@pytest.mark.slow
def test_a_malicious_teacher_runs_no_code_and_is_refused_in_one_line(run_cli, tmp_path):
    marker = tmp_path / "PWNED"
    file = malicious_checkpoint(tmp_path / "teacher.ckpt", marker)
    proc = run_cli(*FAST, "trainer=debug", "distill=kd", f"distill.teacher.ckpt={file}", env=ONE_THREAD)
    one_line_error(proc, f"teacher checkpoint {file} refused", "posix.system", "distill.teacher.trust=true")
    assert not marker.exists()
    # vouched for: loaded with the full pickle (its code runs), then refused as a network of another shape
    proc = run_cli(
        *FAST,
        "trainer=debug",
        "distill=kd",
        f"distill.teacher.ckpt={file}",
        "distill.teacher.trust=true",
        run_dir=tmp_path / "trusted",
        env=ONE_THREAD,
    )
    one_line_error(proc, "does not fit arch resnet20")
    assert marker.exists()


@pytest.mark.slow
def test_a_malicious_resume_checkpoint_runs_no_code_and_is_refused_in_one_line(run_cli, tmp_path):
    done = run_cli(*FAST, "trainer=debug", env=ONE_THREAD)
    assert done.returncode == 0, done.stderr[-3000:]
    last = done.run_dir / "checkpoints" / "last.ckpt"
    marker = tmp_path / "PWNED"
    malicious_checkpoint(last, marker, like=torch.load(last, weights_only=True))
    (done.run_dir / "metrics.json").unlink()  # a run stopped before its end: resume reads last.ckpt
    proc = run_cli(f"resume={done.run_dir}", env=ONE_THREAD)
    one_line_error(proc, f"resume checkpoint {last} refused", "posix.system", "move it away")
    assert not marker.exists()


def test_a_loss_term_network_from_a_malicious_file_runs_no_code(tmp_path):
    from bnn_lab.assembly import load_trained

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("arch: {name: resnet20}\n")
    marker = tmp_path / "PWNED"
    file = malicious_checkpoint(run / "checkpoints" / "best-epoch00.ckpt", marker)
    with pytest.raises(RefusedFile, match="posix.system"):
        load_trained(file, 8)
    assert not marker.exists()


def test_damaged_metrics_files_are_refused_in_one_line(tmp_path):
    bad = tmp_path / "metrics.json"
    bad.write_text('{"test/acc": 0.9, "summ')
    with pytest.raises(UserError, match="metrics file .* is damaged"):
        read_json(bad, "metrics file")
    bad.write_text("[1, 2]")
    with pytest.raises(UserError, match="holds a list, not an object"):
        read_json(bad, "metrics file")


@pytest.mark.parametrize(
    "content,expected",
    [
        ('{"test/acc": 0.9, "val/acc": 0.8, "summ', "is damaged"),
        ('{"test/acc": 93.1, "val/acc": 0.8}', "test/acc = 93.1, not an accuracy in [0, 1]"),
        ('{"test/acc": "0.9", "val/acc": 0.8}', "test/acc = '0.9', not an accuracy"),
        ('{"test/acc": 0.9, "summary": {"params": "many"}}', "summary that is not a table of numbers"),
    ],
)
def test_the_report_refuses_a_damaged_metrics_file_in_one_line(tmp_path, content, expected):
    run = tmp_path / "runs" / "a"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(content)
    proc = subprocess.run(
        [sys.executable, "-m", "bnn_lab.report", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith("bnn-lab-report: error: metrics file")
    assert expected in proc.stderr and "Traceback" not in proc.stderr

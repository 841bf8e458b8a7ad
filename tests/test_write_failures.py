"""Writes that cannot complete leave the previous file whole and say so in one line; a run
directory is written by one live run at a time. The file size limit (RLIMIT_FSIZE) is set in a
child process, where a write past it fails as it would on a full disk."""

from __future__ import annotations

import hashlib
import os
import resource
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import REPO, bnn_lab_cli
from test_bad_input import FAST, ONE_THREAD, one_line_error


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def limited(limit: int):
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


WRITERS = {
    "checkpoint": """
        from bnn_lab.training.safety.checkpoint_io import AtomicCheckpointIO
        write = lambda n: AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(n)}}, path)""",
    "metrics": """
        from bnn_lab.files import write_json
        write = lambda n: write_json(path, {"test/acc": 0.5, "curve": [0.25] * n})""",
    "packed": """
        from bnn_lab.export import save_packed
        write = lambda n: save_packed(torch.nn.Linear(n, 1), path, {"arch": "x"})""",
}


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_a_write_past_the_file_size_limit_keeps_the_previous_file(tmp_path, kind):
    path = tmp_path / "out.file"
    script = (
        textwrap.dedent(f"""
        import sys, torch
        from pathlib import Path
        from bnn_lab.errors import UserError
        path = Path({str(path)!r})""")
        + textwrap.dedent(WRITERS[kind])
        + textwrap.dedent("""
        write(10)  # small: under the limit
        print("written", flush=True)
        try:
            write(200_000)  # past the limit
        except UserError as exc:
            print(exc)
        """)
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        preexec_fn=limited(64 * 1024),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    written, message = proc.stdout.strip().splitlines()
    assert message == {
        "checkpoint": f"could not write checkpoint {path} (file size limit reached); every checkpoint "
        "saved before it is kept: make room, then resume the run"
    }.get(kind, f"could not write {path} (file size limit reached); the previous out.file is kept")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.file"]  # no temporary file left
    assert path.stat().st_size < 64 * 1024  # the small one, whole (loaded below where it matters)
    if kind == "metrics":
        assert '"curve": [\n    0.25' in path.read_text()


@pytest.mark.slow
def test_a_run_that_cannot_write_its_checkpoint_stops_in_one_line_and_loses_nothing(run_cli, tmp_path):
    done = run_cli(*FAST, "trainer.max_epochs=1", env=ONE_THREAD)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = done.run_dir
    last = run_dir / "checkpoints" / "last.ckpt"
    kept = {p: digest(p) for p in (last, run_dir / "metrics.json", *run_dir.glob("checkpoints/best-*.ckpt"))}
    limit = last.stat().st_size - 1  # the next checkpoint, as large, cannot be written
    cmd = bnn_lab_cli() + [f"resume={run_dir}", "trainer.max_epochs=2"]
    proc = subprocess.run(
        cmd,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **ONE_THREAD},
        preexec_fn=limited(limit),
    )
    one_line_error(proc, "could not write checkpoint", "(file size limit reached)", "saved before it is kept")
    assert {p: digest(p) for p in kept} == kept
    assert not list(run_dir.rglob("*.partial"))
    from bnn_lab.files import load_checkpoint

    assert load_checkpoint(last)["global_step"] > 0  # and it still resumes


@pytest.mark.slow
def test_a_second_run_on_a_live_run_directory_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **ONE_THREAD}
    first = subprocess.Popen(
        bnn_lab_cli() + [*FAST, "trainer.max_epochs=500", f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 120
        lock = run_dir / ".bnn-lab.lock"
        while not (lock.is_file() and lock.read_text().strip() == str(first.pid)):
            assert first.poll() is None and time.time() < deadline, "the first run never took its lock"
            time.sleep(0.2)
        for args in ([f"resume={run_dir}"], [*FAST, f"hydra.run.dir={run_dir}"]):
            proc = subprocess.run(
                bnn_lab_cli() + args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
            )
            one_line_error(proc, f"{run_dir} is being written by a live run (process {first.pid})")
        assert first.poll() is None  # the live run goes on
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
    from bnn_lab.training.safety.run_lock import refuse_if_live

    refuse_if_live(run_dir)  # the kernel released the killed run's lock: the folder can be resumed

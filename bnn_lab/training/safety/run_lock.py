"""One live run per run directory.

A run holds an exclusive POSIX record lock (``fcntl.lockf``) on ``<run dir>/.bnn-lab.lock``
from its start to its end; a second run started on the same folder (a repeated command,
``resume=`` while the first is still training) is refused in one line that names the live run's
process. The kernel releases the lock when the process ends however it ends (``kill -9`` too),
so a crashed run never leaves its folder locked. A record lock belongs to the process, not to
the open file: data-loader workers forked from the run do not inherit it (a ``flock`` would stay
held by them for a moment after the run was killed).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from ...errors import ConfigError

LOCK = ".bnn-lab.lock"


class RunDirInUse(ConfigError):
    """Another live process is writing the run directory; ``holder`` says which, in a few words."""

    def __init__(self, message: str, holder: str = "") -> None:
        super().__init__(message)
        self.holder = holder or message


def _try_lock(fh) -> bool:
    try:
        fcntl.lockf(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:  # EACCES or EAGAIN: another process holds it
        if exc.errno in (errno.EACCES, errno.EAGAIN):
            return False
        raise
    return True


def _refuse(run_dir: Path, fh) -> RunDirInUse:
    fh.seek(0)
    pid = fh.read().strip() or "unknown"
    return RunDirInUse(
        f"{run_dir} is being written by a live run (process {pid}); wait for it to end or stop it, "
        "or give another hydra.run.dir",
        holder=f"process {pid} is training {run_dir}",
    )


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run directory's lock while the block runs; raises :class:`RunDirInUse`."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / LOCK, "a+") as fh:
        if not _try_lock(fh):
            raise _refuse(run_dir, fh)
        try:
            fh.truncate(0)
            fh.write(f"{os.getpid()}\n")
            fh.flush()
            yield
        finally:
            fcntl.lockf(fh, fcntl.LOCK_UN)


def refuse_if_live(run_dir: Path) -> None:
    """Raise :class:`RunDirInUse` if a live run holds ``run_dir``'s lock. Takes the lock for an
    instant; never called by the process that holds it (closing the file would release it)."""
    lock = run_dir / LOCK
    if not lock.is_file():
        return
    with open(lock, "a+") as fh:
        if not _try_lock(fh):
            raise _refuse(run_dir, fh)
        fcntl.lockf(fh, fcntl.LOCK_UN)

"""Writes that leave either the previous file or the new one, never half of one.

The content goes to a temporary file in the same folder (``.<name>.<pid>.partial``), is flushed
to disk (fsync) and renamed over the target with ``os.replace``, atomic on POSIX file systems. A
write that cannot complete (disk full, file size limit, read-only folder) removes the temporary
file and raises :class:`WriteFailed`, a one-line error that says the previous file is kept.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError

PARTIAL_SUFFIX = ".partial"
# what a full or limited disk reports; named in the one-line error
NO_ROOM = {
    errno.ENOSPC: "no space left on the device",
    errno.EFBIG: "file size limit reached",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
}


class WriteFailed(UserError):
    """A file could not be written; the file that was there before is unchanged."""

    def __init__(self, path: Path, reason: str, existed: bool) -> None:
        self.path, self.reason = path, reason
        kept = f"the previous {path.name} is kept" if existed else "nothing was written"
        super().__init__(f"could not write {path} ({reason}); {kept}")


def partial_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}{PARTIAL_SUFFIX}")


def io_errno(exc: BaseException) -> int | None:
    """The errno behind ``exc``: torch's writer raises a RuntimeError in the context of the
    OSError, safetensors' writer says "(os error N)" in its message."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            return seen.errno
        seen = seen.__cause__ or seen.__context__
    found = re.search(r"os error (\d+)", str(exc))
    return int(found.group(1)) if found else None


def describe(exc: BaseException) -> str:
    code = io_errno(exc)
    if code in NO_ROOM:
        return NO_ROOM[code]
    return " ".join(str(exc).split())[:200] or type(exc).__name__


def _fsync(path: Path, directory: bool = False) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """``write(tmp)`` writes the content to ``tmp``; then ``tmp`` replaces ``path`` in one rename.

    Raises :class:`WriteFailed` (``path`` untouched) when the content cannot be written."""
    path = Path(path)
    existed = path.exists()
    tmp = partial_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        with open(tmp, "rb+") as f:  # the data on disk before the rename makes it visible
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except Exception as exc:  # the content could not be written, whatever the writer raised
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise WriteFailed(path, describe(exc), existed) from exc
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync(path.parent, directory=True)
    return path


def torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` through :func:`atomic_write`, through a Python file object so that a full
    disk surfaces as its OSError rather than as the archive writer's own error."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            torch.save(obj, f)

    return atomic_write(path, write)


def write_json(path: str | Path, obj: Any) -> Path:
    text = json.dumps(obj, indent=2, sort_keys=True) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text))

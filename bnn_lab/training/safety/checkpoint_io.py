"""Checkpoint files that survive a crash at any moment.

A process killed while it writes ``last.ckpt`` in place leaves half a file, and the run can
no longer resume. Here every checkpoint is written to a temporary file in the same folder,
flushed to disk (fsync) and renamed over the target with ``os.replace``, which is atomic on
POSIX file systems: the target is always either the previous complete file or the new one.

A checkpoint whose weights are NaN or infinite is refused: it would replace the last good
one with a state nobody can train from.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.utilities.cloud_io import _is_local_file_protocol
from pytorch_lightning.plugins.io import TorchCheckpointIO

from ...errors import UserError

PARTIAL_SUFFIX = ".partial"  # temporary files: ".<name>.<pid>.partial", removed on failure


class NonFiniteWeightsError(UserError):
    """Training produced NaN or infinite weights; the checkpoint on disk was kept."""


def partial_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}{PARTIAL_SUFFIX}")


def non_finite_tensors(state_dict: dict[str, Any]) -> list[str]:
    return [k for k, v in state_dict.items()
            if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())]


def _fsync_dir(folder: Path) -> None:
    """Makes the rename itself durable (the directory entry), where the OS allows it."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_torch_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(path)
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint format, written atomically (see the module docstring).
    Remote paths (s3://, gs://) go through Lightning's own writer."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not take storage_options, got {storage_options!r}")
        bad = non_finite_tensors(checkpoint.get("state_dict", {}))
        if bad:
            raise NonFiniteWeightsError(
                f"the weights became NaN or infinite by step {checkpoint.get('global_step')} ({', '.join(bad[:3])}"
                f"{', ...' if len(bad) > 3 else ''}); {path} was not written, the checkpoints saved before are kept; "
                "lower optimizer.lr or set trainer.gradient_clip_val"
            )
        if not _is_local_file_protocol(str(path)):
            return super().save_checkpoint(checkpoint, path)
        atomic_torch_save(checkpoint, Path(path))

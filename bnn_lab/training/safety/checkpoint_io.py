"""Checkpoint files that survive a crash at any moment.

A process killed while it writes ``last.ckpt`` in place leaves half a file, and the run can
no longer resume. Here every checkpoint is written to a temporary file in the same folder,
flushed to disk (fsync) and renamed over the target with ``os.replace``, which is atomic on
POSIX file systems: the target is always either the previous complete file or the new one.

A write that cannot complete (disk full, file size limit) keeps the previous file and ends the
run with one line (:class:`~bnn_lab.files.WriteFailed`). A checkpoint whose weights are NaN or
infinite is refused: it would replace the last good one with a state nobody can train from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning_fabric.utilities.cloud_io import _is_local_file_protocol
from pytorch_lightning.plugins.io import TorchCheckpointIO

from ...errors import UserError
from ...files import WriteFailed, load_checkpoint, torch_save


class NonFiniteWeightsError(UserError):
    """Training produced NaN or infinite weights; the checkpoint on disk was kept."""


class CheckpointWriteFailed(UserError):
    """A checkpoint could not be written (disk full, size limit); those on disk are unchanged."""


def non_finite_tensors(state_dict: dict[str, Any]) -> list[str]:
    return [
        k
        for k, v in state_dict.items()
        if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())
    ]


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint format, written atomically (see the module docstring) and
    read as data (:func:`~bnn_lab.files.load_checkpoint`, whatever ``weights_only`` Lightning
    asks for). Remote paths (s3://, gs://) go through Lightning's own writer and reader, the
    reader with ``weights_only=True``."""

    def load_checkpoint(self, path, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        if not _is_local_file_protocol(str(path)):
            return super().load_checkpoint(path, weights_only=True)
        return load_checkpoint(path, what="checkpoint")

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
        try:
            torch_save(checkpoint, Path(path))
        except WriteFailed as exc:
            raise CheckpointWriteFailed(
                f"could not write checkpoint {exc.path} ({exc.reason}); every checkpoint "
                "saved before it is kept: make room, then resume the run"
            ) from exc

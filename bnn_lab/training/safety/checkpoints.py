"""The checkpoints of a stage: ``checkpoints/last.ckpt``, what a run resumes from, and the best
one by ``val/acc``, what the stage is tested with.

Two callbacks keep them. Lightning's ModelCheckpoint keeps the best one; with
``every_n_train_steps`` it would stop saving at epoch ends, so ``last.ckpt`` has its own
callback, :class:`LastCheckpoint`, which saves both every N optimizer steps and at each epoch
end. The best one is listed first, so at an epoch end it is written before ``last.ckpt``: a
``last.ckpt`` of an epoch end always holds the best-so-far that includes that epoch's val/acc.
A crash between the two writes leaves the older ``last.ckpt``; the resumed run redoes the end
of that epoch, reaches the same val/acc and writes the same best file again.
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Checkpoint, ModelCheckpoint

from ...errors import ConfigError
from ...files.atomic import PARTIAL_SUFFIX
from .run_dir import LAST


def validation_or_epoch_end_follows(trainer: pl.Trainer, batch_idx: int) -> bool:
    """True after the last batch of an epoch and after a batch that validation follows.

    A checkpoint taken there would be taken before that validation or the epoch's end, and
    Lightning restarts from such a checkpoint without running them again; the epoch-end save
    (after both) covers that moment instead."""
    done = batch_idx + 1
    if done >= trainer.num_training_batches:
        return True
    every = trainer.val_check_batch
    return isinstance(every, int) and every > 0 and done % every == 0


class LastCheckpoint(Checkpoint):
    """Writes ``<dirpath>/last.ckpt`` every ``every_n_train_steps`` optimizer steps (None: never
    within an epoch) and at the end of every epoch; :meth:`save` writes it on demand."""

    def __init__(self, dirpath: Path, every_n_train_steps: int | None = None) -> None:
        n = every_n_train_steps
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ConfigError(f"checkpoint.every_n_train_steps must be a positive integer or null, got {n!r}")
        self.path = Path(dirpath) / LAST
        self.every = n or 0
        self.saved_step: int | None = None

    def save(self, trainer: pl.Trainer) -> None:
        trainer.save_checkpoint(str(self.path))
        self.saved_step = trainer.global_step

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.saved_step = trainer.global_step  # a resumed run has this state on disk already

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        step = trainer.global_step
        # step != saved_step: the optimizer stepped since the last save (not so for the batches
        # that only accumulate gradients)
        if (
            self.every
            and step % self.every == 0
            and step != self.saved_step
            and not validation_or_epoch_end_follows(trainer, batch_idx)
        ):
            self.save(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.save(trainer)


def best_checkpoint(dirpath: Path) -> ModelCheckpoint:
    """The best checkpoint by ``val/acc``, written at epoch ends as ``best-epochNN.ckpt``: no
    ``=`` in the name, so that the path can be given back as an override
    (``distill.teacher.ckpt=<run>/checkpoints/best-epoch02.ckpt``)."""
    return ModelCheckpoint(
        dirpath=str(dirpath),
        filename="best-epoch{epoch:02d}",
        auto_insert_metric_name=False,
        monitor="val/acc",
        mode="max",
        save_last=False,
        save_top_k=1,
    )


def remove_partial_files(dirpath: Path) -> list[Path]:
    """Temporary files of writes that a killed process left behind."""
    removed = sorted(Path(dirpath).glob(f".*{PARTIAL_SUFFIX}")) if Path(dirpath).is_dir() else []
    for p in removed:
        p.unlink(missing_ok=True)
    return removed

"""Stopping cleanly when a cluster takes the machine back.

What the installed Lightning (2.6) does by itself: on SIGTERM it sets ``trainer.received_sigterm``
and leaves ``fit`` after the current batch with ``SIGTERMException``, a ``SystemExit`` of
status 0, without saving anything; under SLURM with ``SLURMEnvironment(auto_requeue=True)`` its
SIGUSR1 handler saves ``hpc_ckpt_<n>.ckpt`` from inside the signal handler, wherever the
training step happens to be, and runs ``scontrol requeue``.

What is added here:

- :func:`cluster_plugins`: under SLURM, ``SLURMEnvironment(auto_requeue=True,
  requeue_signal=SIGUSR1)`` stated explicitly (Lightning's default, kept whatever defaults
  change);
- :class:`PreemptionCheckpoint`: SIGTERM, SIGUSR1 (Lightning's requeue) and SIGUSR2
  (submitit's requeue, when its handler is installed) are held until the current batch ends;
  then ``last.ckpt`` is written at that clean point, the held requeue handlers run (they
  requeue the job; submitit's also exits), and on SIGTERM the process exits with status 143
  and one line saying how to resume (:class:`bnn_lab.errors.Preempted`);
- :func:`exit_on_sigterm`: Lightning's SIGTERMException outside the training batches (during
  validation or testing) also becomes that exit, never a status 0 that a scheduler would take
  for success.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator

import pytorch_lightning as pl
from lightning_fabric.plugins.environments import SLURMEnvironment
from pytorch_lightning.callbacks import Checkpoint
from pytorch_lightning.utilities.exceptions import SIGTERMException

from ...errors import Preempted
from .checkpoints import validation_or_epoch_end_follows

log = logging.getLogger(__name__)
REQUEUE_SIGNAL = signal.SIGUSR1
HELD_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


def cluster_plugins() -> list:
    """``SLURMEnvironment(auto_requeue=True, requeue_signal=SIGUSR1)`` when this process is a
    SLURM batch task (Lightning's own test: ``SLURM_NTASKS`` set and the job not named ``bash``
    or ``interactive``), else nothing. A shell inside ``salloc`` has ``SLURM_JOB_ID`` too, but
    forcing the SLURM environment there would make Lightning wait for ranks that srun never
    started."""
    if SLURMEnvironment.detect():
        return [SLURMEnvironment(auto_requeue=True, requeue_signal=REQUEUE_SIGNAL)]
    return []


@contextlib.contextmanager
def exit_on_sigterm(resume_hint: str) -> Iterator[None]:
    """Turns Lightning's SIGTERMException (status 0) into :class:`Preempted` (status 143)."""
    try:
        yield
    except SIGTERMException as exc:
        raise Preempted(f"stopped by SIGTERM; {resume_hint}") from exc


class PreemptionCheckpoint(Checkpoint):
    """Holds SIGTERM / SIGUSR1 / SIGUSR2 until the end of the current training batch, saves
    ``last.ckpt`` there (``save(trainer)``), then passes the requeue signals on to the handlers
    that were installed before and stops on SIGTERM (:class:`Preempted`).

    A Checkpoint subclass so that Lightning runs it after the other callbacks' batch-end hooks
    (LatentClip clips the weights there): it saves the state the next step starts from.

    Not after a batch that validation or the epoch end follows: the epoch-end checkpoint comes
    right after it, and the signal is handled at the next batch (or when training ends). Under
    DDP the ranks agree at every batch (one all-reduce of a flag) so that all of them save and
    stop at the same step.
    """

    def __init__(self, save: Callable[[pl.Trainer], None], resume_hint: str) -> None:
        self._save = save
        self.resume_hint = resume_hint
        self.pending: list[int] = []
        self._previous: dict[int, object] = {}

    # -- signal handlers ------------------------------------------------------------------
    def _hold(self, signum: int, frame) -> None:
        if signum not in self.pending:
            self.pending.append(signum)

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        for signum in HELD_SIGNALS:
            previous = signal.getsignal(signum)
            if signum == signal.SIGTERM or callable(previous):  # the user signals only where someone listens
                self._previous[signum] = previous
                signal.signal(signum, self._hold)

    def uninstall(self) -> None:
        for signum, previous in self._previous.items():
            if signal.getsignal(signum) == self._hold:
                signal.signal(signum, previous)
        self._previous = {}

    # -- hooks ----------------------------------------------------------------------------
    def _agreed(self, trainer: pl.Trainer, flag: bool) -> bool:
        if trainer.world_size > 1:
            return bool(trainer.strategy.reduce_boolean_decision(flag, all=False))
        return flag

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.received_sigterm:  # arrived before the handlers were in place
            self._hold(signal.SIGTERM, None)
        self.install()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if self._agreed(trainer, bool(self.pending)) and not validation_or_epoch_end_follows(trainer, batch_idx):
            self.handle(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._agreed(trainer, bool(self.pending)):
            self.handle(trainer)
        self.uninstall()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self.uninstall()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.uninstall()

    def handle(self, trainer: pl.Trainer) -> None:
        held, self.pending = list(self.pending), []
        stop = self._agreed(trainer, signal.SIGTERM in held)
        names = ", ".join(signal.Signals(s).name for s in held) or "a signal on another rank"
        log.warning("%s received: saving the checkpoint at step %d", names, trainer.global_step)
        self._save(trainer)
        for signum in held:
            previous = self._previous.get(signum)
            if signum != signal.SIGTERM and callable(previous):
                previous(signum, None)  # Lightning's SLURM requeue, submitit's requeue-and-exit
        if stop:
            self.uninstall()
            raise Preempted(
                f"stopped by SIGTERM at step {trainer.global_step} (epoch {trainer.current_epoch}) "
                f"after saving the checkpoint; {self.resume_hint}"
            )

"""Preemption: the SLURM environment with auto-requeue on SIGUSR1, and signals held until the
end of the batch, where the checkpoint is written before anything else happens."""

from __future__ import annotations

import os
import signal
from types import SimpleNamespace

import pytest
from lightning_fabric.plugins.environments import SLURMEnvironment
from pytorch_lightning.utilities.exceptions import SIGTERMException

from bnn_lab.errors import Preempted
from bnn_lab.training.safety.preemption import PreemptionCheckpoint, cluster_plugins, exit_on_sigterm

SLURM_BATCH_TASK = {
    "SLURM_JOB_ID": "4242",
    "SLURM_NTASKS": "1",
    "SLURM_JOB_NAME": "train",
    "SLURM_PROCID": "0",
    "SLURM_LOCALID": "0",
    "SLURM_NODEID": "0",
    "SLURM_NODELIST": "node1",
}


def test_slurm_batch_task_gets_auto_requeue_on_sigusr1(monkeypatch):
    for k, v in SLURM_BATCH_TASK.items():
        monkeypatch.setenv(k, v)
    [env] = cluster_plugins()
    assert isinstance(env, SLURMEnvironment)
    assert env.auto_requeue is True and env.requeue_signal == signal.SIGUSR1


def test_no_slurm_environment_outside_slurm_or_in_an_interactive_shell(monkeypatch):
    for k in SLURM_BATCH_TASK:
        monkeypatch.delenv(k, raising=False)
    assert cluster_plugins() == []
    for k, v in SLURM_BATCH_TASK.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("SLURM_JOB_NAME", "interactive")  # salloc / srun --pty bash
    assert cluster_plugins() == []


def fake_trainer(step: int = 7, epoch: int = 1) -> SimpleNamespace:
    return SimpleNamespace(
        global_step=step,
        current_epoch=epoch,
        world_size=1,
        received_sigterm=False,
        num_training_batches=10,
        val_check_batch=10,
    )


@pytest.fixture
def restore_handlers():
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)}
    yield
    for s, h in saved.items():
        signal.signal(s, h)


def test_requeue_signal_waits_for_the_batch_end_then_saves_then_requeues(restore_handlers):
    events = []
    signal.signal(signal.SIGUSR2, lambda signum, frame: events.append(("requeue", signum)))  # submitit's handler
    cb = PreemptionCheckpoint(save=lambda trainer: events.append(("save", trainer.global_step)), resume_hint="hint")
    trainer = fake_trainer()
    cb.on_train_start(trainer, None)
    os.kill(os.getpid(), signal.SIGUSR2)
    assert events == [] and cb.pending == [signal.SIGUSR2]  # held: the batch is still running
    cb.on_train_batch_end(trainer, None, None, None, batch_idx=3)
    assert events == [("save", 7), ("requeue", signal.SIGUSR2)]  # checkpoint first, then the requeue
    assert cb.pending == []
    cb.on_train_end(trainer, None)
    os.kill(os.getpid(), signal.SIGUSR2)  # the previous handler is back
    assert events[-1] == ("requeue", signal.SIGUSR2)


def test_sigterm_saves_at_the_next_batch_end_and_exits_with_143(restore_handlers):
    saves = []
    before = signal.getsignal(signal.SIGTERM)
    cb = PreemptionCheckpoint(save=lambda trainer: saves.append(trainer.global_step), resume_hint="resume with: X")
    trainer = fake_trainer(step=19)
    cb.on_train_start(trainer, None)
    os.kill(os.getpid(), signal.SIGTERM)  # would end the test process if it were not held
    cb.on_train_batch_end(trainer, None, None, None, batch_idx=9)  # validation and the epoch end follow: later
    assert saves == [] and cb.pending == [signal.SIGTERM]
    trainer.global_step = 21
    with pytest.raises(Preempted) as stop:
        cb.on_train_batch_end(trainer, None, None, None, batch_idx=0)
    assert saves == [21]
    assert stop.value.code == 143 == 128 + signal.SIGTERM
    assert stop.value.message == ("stopped by SIGTERM at step 21 (epoch 1) after saving the checkpoint; resume with: X")
    assert signal.getsignal(signal.SIGTERM) == before


def test_sigterm_that_arrived_before_training_started_is_not_lost(restore_handlers):
    saves = []
    cb = PreemptionCheckpoint(save=lambda trainer: saves.append(trainer.global_step), resume_hint="")
    trainer = fake_trainer()
    trainer.received_sigterm = True  # Lightning's own handler caught it during setup
    cb.on_train_start(trainer, None)
    with pytest.raises(Preempted):
        cb.on_train_batch_end(trainer, None, None, None, batch_idx=0)
    assert saves == [7]


def test_sigterm_after_the_last_batch_is_handled_when_training_ends(restore_handlers):
    saves = []
    cb = PreemptionCheckpoint(save=lambda trainer: saves.append(trainer.global_step), resume_hint="")
    trainer = fake_trainer(step=20)
    cb.on_train_start(trainer, None)
    os.kill(os.getpid(), signal.SIGTERM)
    cb.on_train_batch_end(trainer, None, None, None, batch_idx=9)
    with pytest.raises(Preempted):
        cb.on_train_end(trainer, None)
    assert saves == [20]


def test_lightning_sigterm_exception_becomes_status_143():
    """Lightning's own SIGTERMException is a SystemExit of status 0: a scheduler would see success."""
    assert SIGTERMException().code is None
    with pytest.raises(Preempted) as stop:
        with exit_on_sigterm("resume with: bnn-lab resume=/runs/a"):
            raise SIGTERMException()
    assert stop.value.code == 143 and stop.value.message.endswith("resume with: bnn-lab resume=/runs/a")

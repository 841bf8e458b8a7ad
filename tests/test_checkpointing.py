"""Checkpoint files: written atomically, never with NaN weights, and at the right moments
(every N optimizer steps, every epoch end, the best one by val/acc)."""

from __future__ import annotations

import io
import os
import random

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from bnn_lab.errors import ConfigError
from bnn_lab.files import atomic
from bnn_lab.training.safety import checkpoint_io, rng
from bnn_lab.training.safety.checkpoint_io import AtomicCheckpointIO, NonFiniteWeightsError
from bnn_lab.training.safety.checkpoints import LastCheckpoint, best_checkpoint


def good_checkpoint(value: float = 1.0) -> dict:
    return {"global_step": 7, "state_dict": {"w": torch.full((3,), value)}}


def test_a_write_that_fails_midway_leaves_the_previous_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(good_checkpoint(1.0), path)
    before = path.read_bytes()

    def dies_halfway(obj, f):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt  # the process is interrupted in the middle of the write

    monkeypatch.setattr(checkpoint_io.torch, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        AtomicCheckpointIO().save_checkpoint(good_checkpoint(2.0), path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert torch.equal(torch.load(path)["state_dict"]["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no temporary file left


def test_the_file_is_flushed_to_disk_before_it_replaces_the_old_one(tmp_path, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(
        atomic.os, "replace", lambda a, b: (calls.append(f"replace {os.path.basename(b)}"), real_replace(a, b))[1]
    )
    AtomicCheckpointIO().save_checkpoint(good_checkpoint(), tmp_path / "last.ckpt")
    assert calls[:2] == ["fsync", "replace last.ckpt"]  # then the directory entry, where the OS allows it
    assert torch.equal(torch.load(tmp_path / "last.ckpt")["state_dict"]["w"], torch.ones(3))


def test_non_finite_weights_are_refused_and_the_last_good_file_is_kept(tmp_path):
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(good_checkpoint(1.0), path)
    bad = good_checkpoint(1.0)
    bad["state_dict"]["w"][1] = float("nan")
    with pytest.raises(NonFiniteWeightsError, match=r"by step 7 \(w\).*was not written"):
        AtomicCheckpointIO().save_checkpoint(bad, path)
    assert torch.equal(torch.load(path)["state_dict"]["w"], torch.ones(3))


def test_rng_states_survive_a_weights_only_load():
    """Lightning loads checkpoints with weights_only=True: the states must be plain tensors and tuples."""
    state = rng.capture()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    expected = (random.random(), float(np.random.rand()), torch.rand(2))
    rng.restore(loaded)
    again = (random.random(), float(np.random.rand()), torch.rand(2))
    assert expected[:2] == again[:2] and torch.equal(expected[2], again[2])


# -- when checkpoints are written ------------------------------------------------------------
class Tiny(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(4, 2)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val/acc", (self.net(x).argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(tmp_path, monkeypatch, every_n: int | None, accumulate: int = 1):
    """Two epochs of 10 batches; returns (global step, epochs finished) at each last.ckpt write."""
    writes = []
    real_save = AtomicCheckpointIO.save_checkpoint

    def spy(self, checkpoint, path, storage_options=None):
        if path.endswith("last.ckpt"):
            writes.append((checkpoint["global_step"], trainer.fit_loop.epoch_progress.current.processed))
        return real_save(self, checkpoint, path, storage_options)

    monkeypatch.setattr(AtomicCheckpointIO, "save_checkpoint", spy)
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(40, 4, generator=g), torch.randint(0, 2, (40,), generator=g))
    ckpt_dir = tmp_path / "checkpoints"
    trainer = pl.Trainer(
        max_epochs=2,
        accumulate_grad_batches=accumulate,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        plugins=[AtomicCheckpointIO()],
        default_root_dir=tmp_path,
        callbacks=[best_checkpoint(ckpt_dir), LastCheckpoint(ckpt_dir, every_n)],
    )
    trainer.fit(Tiny(), DataLoader(data, batch_size=4), DataLoader(data, batch_size=20))
    return writes, ckpt_dir


def test_last_checkpoint_every_n_steps_and_at_each_epoch_end(tmp_path, monkeypatch):
    writes, ckpt_dir = fit(tmp_path, monkeypatch, every_n=3)
    # steps 3, 6, 9 and the epoch end (10); 12, 15, 18 and the epoch end (20)
    assert writes == [(3, 0), (6, 0), (9, 0), (10, 1), (12, 1), (15, 1), (18, 1), (20, 2)]
    assert torch.load(ckpt_dir / "last.ckpt", weights_only=False)["global_step"] == 20
    assert len(list(ckpt_dir.glob("best-epoch[0-9]*.ckpt"))) == 1  # the best one by val/acc is still kept


def test_no_step_checkpoint_just_before_validation_and_the_epoch_end(tmp_path, monkeypatch):
    """Step 10 ends the epoch: only the epoch-end save (after validation) is taken there."""
    writes, _ = fit(tmp_path, monkeypatch, every_n=5)
    assert writes == [(5, 0), (10, 1), (15, 1), (20, 2)]


def test_step_checkpoints_follow_optimizer_steps_under_gradient_accumulation(tmp_path, monkeypatch):
    """Two batches per optimizer step: never in the middle of an accumulation."""
    writes, _ = fit(tmp_path, monkeypatch, every_n=1, accumulate=2)
    assert writes == [(1, 0), (2, 0), (3, 0), (4, 0), (5, 1), (6, 1), (7, 1), (8, 1), (9, 1), (10, 2)]


def test_epoch_end_only_without_every_n_train_steps(tmp_path, monkeypatch):
    writes, _ = fit(tmp_path, monkeypatch, every_n=None)
    assert writes == [(10, 1), (20, 2)]


@pytest.mark.parametrize("bad", ["abc", 0, -5, 2.5, True])
def test_every_n_train_steps_must_be_a_positive_integer(tmp_path, bad):
    with pytest.raises(ConfigError, match="checkpoint.every_n_train_steps must be a positive integer or null"):
        LastCheckpoint(tmp_path, bad)

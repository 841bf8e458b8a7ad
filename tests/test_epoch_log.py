"""The one line per epoch: its time, from the epoch's start, or from the resume when a run
continues in the middle of an epoch (Lightning then calls no epoch-start hook)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import torch

from bnn_lab.training import epoch_log
from bnn_lab.training.epoch_log import EpochLog


def trainer(step: int, epoch: int) -> SimpleNamespace:
    return SimpleNamespace(
        global_step=step,
        current_epoch=epoch,
        max_epochs=3,
        sanity_checking=False,
        is_global_zero=True,
        callback_metrics={"val/acc": torch.tensor(0.875)},
    )


@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(epoch_log.time, "time", lambda: now[0])
    return now


def test_a_fresh_epoch_is_timed_from_its_start(clock, caplog):
    cb, t = EpochLog(), trainer(step=0, epoch=0)
    cb.on_train_start(t, None)
    clock[0] += 30
    cb.on_train_epoch_start(t, None)
    clock[0] += 65
    with caplog.at_level(logging.INFO, logger="bnn_lab.training"):
        cb.on_train_epoch_end(t, None)
    assert caplog.messages == ["epoch 1/3: val/acc 0.8750 (1m 05s)"]


def test_an_epoch_continued_mid_way_is_timed_from_the_resume_and_says_so(clock, caplog):
    cb, t = EpochLog(), trainer(step=600, epoch=1)
    cb.on_train_start(t, None)  # no on_train_epoch_start follows for a mid-epoch resume
    clock[0] += 912
    with caplog.at_level(logging.INFO, logger="bnn_lab.training"):
        cb.on_train_epoch_end(t, None)
        cb.on_train_epoch_start(t, None)  # the next epoch is whole again
        clock[0] += 5
        cb.on_train_epoch_end(trainer(step=900, epoch=2), None)
    assert caplog.messages == [
        "epoch 2/3: val/acc 0.8750 (15m 12s since resuming at step 600)",
        "epoch 3/3: val/acc 0.8750 (5s)",
    ]

"""In-memory splits go to the trainer's device once (``data.on_device``) and come back to the
CPU at teardown. A stand-in trainer whose root device is ``meta`` plays the GPU: tensors move
there without any memory or CUDA."""

from types import SimpleNamespace

import pytest
import torch

from bnn_lab.data import build_datamodule
from bnn_lab.errors import ConfigError


def datamodule(device: str | None, on_device="auto", num_workers=0):
    dm = build_datamodule(
        "synthetic",
        n_train=64,
        n_test=16,
        batch_size=8,
        val_size=0.25,
        img_size=8,
        on_device=on_device,
        num_workers=num_workers,
    )
    if device is not None:
        dm.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device)))
    return dm


def devices(dm) -> set[str]:
    return {t.device.type for pair in dm.splits.values() for t in pair}


def test_cpu_trainer_keeps_the_cpu_tensors():
    dm = datamodule("cpu")
    dm.setup("fit")
    before = {k: x.data_ptr() for k, (x, _) in dm.splits.items()}
    dm.setup("test")  # a second setup neither copies nor moves
    assert devices(dm) == {"cpu"}
    assert {k: x.data_ptr() for k, (x, _) in dm.splits.items()} == before
    x, y = next(iter(dm.train_dataloader()))
    assert x.device.type == "cpu" and x.shape == (8, 3, 8, 8)


def test_accelerator_gets_the_splits_once_and_batches_are_gathered_there():
    dm = datamodule("meta", num_workers=2)
    dm.setup("fit")
    assert devices(dm) == {"meta"}
    assert dm.num_workers == 0  # worker processes cannot share device tensors
    x, y = next(iter(dm.train_dataloader()))
    assert x.device.type == "meta" and y.device.type == "meta" and x.shape == (8, 3, 8, 8)
    placed = {k: x for k, (x, _) in dm.splits.items()}
    dm.setup("test")  # already there: the same tensors, no second copy
    assert all(dm.splits[k][0] is placed[k] for k in placed)
    dm.teardown("fit")  # CPU users (the packed evaluation) read the CPU tensors again
    assert devices(dm) == {"cpu"}
    x, _ = next(iter(dm.test_dataloader()))
    assert x.device.type == "cpu"


def test_on_device_false_or_no_trainer_stays_on_cpu():
    for dm in (datamodule("meta", on_device=False), datamodule(None)):
        dm.setup("fit")
        assert devices(dm) == {"cpu"}


def test_on_device_rejects_other_values():
    with pytest.raises(ConfigError, match="on_device"):
        datamodule("cpu", on_device="gpu")

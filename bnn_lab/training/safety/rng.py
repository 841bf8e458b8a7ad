"""Random number generator states in checkpoints.

Lightning's checkpoints hold the weights, the optimizer, the scheduler and the loop counters,
but not the RNG states. A run restarted from a checkpoint would draw other random numbers
(augmentation, dropout) from then on than the run that was never stopped. The
:class:`RngState` callback adds the states of Python's ``random``, NumPy, torch and every CUDA
device to each checkpoint and puts them back when the restarted training starts.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from ...files import load_checkpoint, torch_save


def capture() -> dict[str, Any]:
    """Plain tuples, numbers and tensors only: Lightning loads checkpoints with
    ``torch.load(weights_only=True)``, which refuses NumPy arrays."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # never initializes CUDA itself
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        for i, s in enumerate(cuda[: torch.cuda.device_count()]):  # another machine: the devices both have
            torch.cuda.set_rng_state(s, i)


def save(path: Path) -> None:
    torch_save(capture(), path)


def load(path: Path) -> None:
    restore(load_checkpoint(path, what="RNG state"))


class RngState(pl.Callback):
    """Stores the RNG states in every checkpoint (taken at the moment it is written) and
    restores them at ``on_train_start`` of a resumed fit: after Lightning has built the
    dataloaders and before the first batch, the same point in the random stream where the
    stopped run wrote the checkpoint."""

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"rng": capture()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict.get("rng")

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._pending is not None:
            restore(self._pending)
            self._pending = None

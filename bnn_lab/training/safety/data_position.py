"""The position of the training loader in its epoch, in checkpoints.

Lightning (>= 2.3) saves the ``state_dict()`` of a stateful training loader in its checkpoints
and means to load it back before iterating again, but it only does so when it builds the loader
after the checkpoint is restored. ``ClassificationModule.configure_optimizers`` asks for
``trainer.estimated_stepping_batches`` (the length of the LR schedule), which makes Lightning
build the training loader before the restore; the saved position is then never applied
(checked with pytorch-lightning 2.6) and a run restarted mid-epoch would begin the epoch again.
This callback keeps the position in its own checkpoint entry and applies it when training
starts, before the first batch is drawn (the loaders of bnn_lab.data.sampler read their state
lazily, at the first batch).
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl


class TrainLoaderPosition(pl.Callback):
    def __init__(self) -> None:
        self._trainer: pl.Trainer | None = None
        self._pending: dict[str, Any] | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def _loader(self):
        if self._trainer is None:
            return None
        loader = self._trainer.train_dataloader
        return loader if callable(getattr(loader, "state_dict", None)) else None

    def state_dict(self) -> dict[str, Any]:
        loader = self._loader()
        state = loader.state_dict() if loader is not None else {}
        return {"train_loader": state} if state else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict.get("train_loader")

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loader = self._loader()
        if self._pending and loader is not None:
            loader.load_state_dict(self._pending)
        self._pending = None

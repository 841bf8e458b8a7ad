"""The LightningModule that trains any (binary) classifier."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from ..errors import UserError
from .optim import build_optimizer, build_scheduler


class NonFiniteLossError(UserError):
    """Training stopped because the loss is NaN or infinite."""


class ClassificationModule(pl.LightningModule):
    """Cross-entropy training of ``model``; logs ``{train,val,test}/{loss,acc}`` and
    ``test/acc5`` where there are at least 5 classes."""

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        optimizer: Mapping[str, Any],
        scheduler: Mapping[str, Any],
    ) -> None:
        super().__init__()
        self.model = model
        self.num_classes = num_classes
        self.optimizer_cfg, self.scheduler_cfg = dict(optimizer), dict(scheduler)
        self.acc = nn.ModuleDict({f"{s}_acc": MulticlassAccuracy(num_classes, average="micro") for s in ("train", "val", "test")})
        self.acc5 = MulticlassAccuracy(num_classes, top_k=5, average="micro") if num_classes >= 5 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def _step(self, batch, stage: str) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        acc = self.acc[f"{stage}_acc"]
        acc(logits, y)
        on_step = stage == "train"
        self.log(f"{stage}/loss", loss, on_step=on_step, on_epoch=True, prog_bar=True, batch_size=len(y))
        self.log(f"{stage}/acc", acc, on_step=on_step, on_epoch=True, prog_bar=True, batch_size=len(y))
        if stage == "test" and self.acc5 is not None:
            self.acc5(logits, y)
            self.log("test/acc5", self.acc5, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def training_step(self, batch, batch_idx):
        loss = self._step(batch, "train")
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"the training loss became {loss.item()} at step {self.global_step} (epoch {self.current_epoch}); "
                "checkpoints written before are kept; lower optimizer.lr or enable trainer.gradient_clip_val"
            )
        return loss

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def configure_optimizers(self):
        optimizer = build_optimizer(self.model, self.optimizer_cfg)
        total = int(self.trainer.estimated_stepping_batches)
        epochs = max(int(self.trainer.max_epochs or 1), 1)
        scheduler = build_scheduler(optimizer, self.scheduler_cfg, total, max(total // epochs, 1))
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

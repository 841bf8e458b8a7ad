"""Callbacks every run uses."""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from ..estimators import Quantizer
from ..optim import latent_parameters


def estimator_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in model.modules() if isinstance(m, Quantizer)]


class EstimatorProgress(pl.Callback):
    """Calls ``set_progress(p)`` on every estimator before each training step, with
    p = step / total steps in [0, 1] (schedules of EDE, FDA, ...)."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        total = max(int(trainer.estimated_stepping_batches), 1)
        p = min(trainer.global_step / total, 1.0)
        for m in estimator_modules(pl_module):
            m.set_progress(p)


class LatentClip(pl.Callback):
    """Clips latent binary weights to [-1, 1] after each optimizer step (BinaryConnect)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        with torch.no_grad():
            for p in latent_parameters(pl_module.modules()):
                p.clamp_(-1.0, 1.0)

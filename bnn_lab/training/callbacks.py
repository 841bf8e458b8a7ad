"""Lightning callbacks by name: ``callbacks=[<name>, ...]`` adds registered ones to a run
(a plugin registers its own with :func:`register_callback`). Those that keep a run's files,
its resume bit-exact and its schedules right are not in this list: every run has them
(``bnn_lab.training.run``)."""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from ..estimators import Quantizer
from ..optim import latent_parameters
from ..registry import Registry

CALLBACKS: Registry[type[pl.Callback]] = Registry("callback")
register_callback = CALLBACKS.register


def build_callbacks(names: list[str] | None) -> list[pl.Callback]:
    """The registered callbacks ``names``, built without arguments (an unknown name lists the valid ones)."""
    return [CALLBACKS.get(name)() for name in names or ()]


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


@register_callback("latent_clip")
class LatentClip(pl.Callback):
    """Clips latent binary weights to [-1, 1] after each optimizer step (BinaryConnect); also
    what ``optimizer.clip_latent=true`` adds."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        with torch.no_grad():
            for p in latent_parameters(pl_module.modules()):
                p.clamp_(-1.0, 1.0)

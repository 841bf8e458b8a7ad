"""The LightningModule that trains any (binary) classifier, optionally taught by a teacher."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from ..assembly import load_trained
from ..errors import UserError
from ..losses import FeatureCapture, LossInputs, build_terms
from ..optim import configure_optimizer
from .safety.epoch_metrics import EpochMetrics, fill_missing


class NonFiniteLossError(UserError):
    """Training stopped because the loss is NaN or infinite."""


class ClassificationModule(pl.LightningModule):
    """Cross-entropy training of ``model``; logs ``{train,val,test}/{loss,acc}`` and
    ``test/acc5`` where there are at least 5 classes.

    The training loss is ``loss["ce"]`` x CE plus the weighted terms of ``loss``
    (``{name: weight or options}``: the run's ``loss`` node, where a distillation preset put its
    kd / attention terms, or a stage's ``terms``), each logged as ``train/<name>`` (weighted).
    Terms that read a teacher need the ``teacher``, which stays in eval mode without gradients
    and is not a registered submodule, so checkpoints hold the student only.
    ``compile_model()`` runs the steps through a ``torch.compile`` of the model.
    """

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        optimizer: Mapping[str, Any],
        scheduler: Mapping[str, Any],
        teacher: nn.Module | None = None,
        meta: Mapping[str, Any] | None = None,
        loss: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.num_classes = num_classes
        self.optimizer_cfg, self.scheduler_cfg = dict(optimizer), dict(scheduler)
        loss = dict(loss or {})
        self.ce_weight = float(loss.pop("ce", 1.0))
        self.terms = build_terms(loss, network_loader=load_trained)
        for term in self.terms:
            if term.needs_teacher and teacher is None:
                raise UserError(
                    f"loss term {term.name!r} needs a teacher (distill=kd or real2bin, or a stage "
                    "taught by the previous one)"
                )
        if teacher is not None:
            teacher.eval().requires_grad_(False)
        object.__setattr__(self, "teacher", teacher)  # not a submodule: never trained, never saved
        object.__setattr__(self, "compiled", None)  # likewise: the compiled model shares the weights
        self.meta = dict(meta or {})
        self._captures: tuple[FeatureCapture, FeatureCapture | None] | None = None
        self.acc = nn.ModuleDict(
            {f"{s}_acc": MulticlassAccuracy(num_classes, average="micro") for s in ("val", "test")}
        )
        self.train_epoch = EpochMetrics(num_classes, [term.name for term in self.terms])
        self.acc5 = MulticlassAccuracy(num_classes, top_k=5, average="micro") if num_classes >= 5 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.model if self.compiled is None else self.compiled)(x)

    def compile_model(self, **kwargs) -> None:
        """Steps call ``torch.compile(model, **kwargs)`` (config key ``compile``); the model
        itself stays as it is, so its state_dict keys, the copies taken for teachers and the
        packed export do not see the compiled wrapper."""
        object.__setattr__(self, "compiled", torch.compile(self.model, **kwargs))

    # -- teacher and hooks ---------------------------------------------------------------
    def on_fit_start(self) -> None:
        if self.teacher is not None:
            self.teacher.to(self.device).eval()
        points = list(dict.fromkeys(n for term in self.terms for n in term.feature_layers(self.model)))
        if points:
            teacher = FeatureCapture(self.teacher, points).attach() if self.teacher is not None else None
            self._captures = (FeatureCapture(self.model, points).attach(), teacher)

    def remove_hooks(self) -> None:
        if self._captures is not None:
            for capture in self._captures:
                if capture is not None:
                    capture.detach()
            self._captures = None

    def on_fit_end(self) -> None:
        self.remove_hooks()

    def teardown(self, stage: str) -> None:
        self.remove_hooks()  # also when fit stops on an exception

    # -- steps ---------------------------------------------------------------------------
    def _log_metrics(self, stage: str, logits, y, loss) -> None:
        if stage == "train":  # epoch means in the checkpoint (training/safety/epoch_metrics.py)
            acc = self.train_epoch.acc
            self.train_epoch.loss(loss.detach(), len(y))
            loss = self.train_epoch.loss
        else:
            acc = self.acc[f"{stage}_acc"]
        acc(logits, y)
        on_step = stage == "train"
        self.log(
            f"{stage}/loss",
            loss,
            on_step=on_step,
            on_epoch=True,
            prog_bar=True,
            batch_size=len(y),
            sync_dist=stage != "train",
        )
        self.log(f"{stage}/acc", acc, on_step=on_step, on_epoch=True, prog_bar=True, batch_size=len(y))
        if stage == "test" and self.acc5 is not None:
            self.acc5(logits, y)
            self.log("test/acc5", self.acc5, on_step=False, on_epoch=True, batch_size=len(y))

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        ce = F.cross_entropy(logits, y)
        loss = self.ce_weight * ce
        if self.teacher is not None:
            with torch.no_grad():
                teacher_logits = self.teacher(x)
        if self.terms:
            student, teacher = self._captures or (None, None)
            inputs = LossInputs(
                x,
                y,
                logits,
                self.model,
                self.progress(),
                student.outputs if student else {},
                teacher_logits if self.teacher is not None else None,
                teacher.outputs if teacher else {},
            )
            for term in self.terms:
                value = term.weight * term(inputs)
                mean = self.train_epoch.terms[term.name]
                mean(value.detach(), len(y))
                self.log(f"train/{term.name}", mean, on_step=True, on_epoch=True, batch_size=len(y))
                loss = loss + value
        self._log_metrics("train", logits, y, ce)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"the training loss became {loss.item()} at step {self.global_step} (epoch {self.current_epoch}); "
                "checkpoints written before are kept; lower optimizer.lr or enable trainer.gradient_clip_val"
            )
        return loss

    def progress(self) -> float:
        """Training steps done / total, in [0, 1] (0 outside a fit)."""
        if self._trainer is None:
            return 0.0
        return min(self.trainer.global_step / max(int(self.trainer.estimated_stepping_batches), 1), 1.0)

    def _eval_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Evaluation in float32 whatever the training precision: under mixed precision the
        integer sums of a binary conv above 256 would round to bf16, and the packed model, which
        computes them exactly, could then disagree with the float model on some images."""
        with torch.autocast(x.device.type, enabled=False):
            return self(x.float() if x.is_floating_point() else x)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self._eval_logits(x)
        self._log_metrics("val", logits, y, F.cross_entropy(logits, y))

    def test_step(self, batch, batch_idx):
        x, y = batch
        logits = self._eval_logits(x)
        self._log_metrics("test", logits, y, F.cross_entropy(logits, y))

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["bnn_lab"] = self.meta  # arch, precision, classes: checked when used as a teacher

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        fill_missing(checkpoint.get("state_dict", {}), self)  # checkpoints from before the epoch states

    def configure_optimizers(self):
        total = int(self.trainer.estimated_stepping_batches)
        epochs = max(int(self.trainer.max_epochs or 1), 1)
        optimizer, scheduler = configure_optimizer(
            self.model, self.optimizer_cfg, self.scheduler_cfg, total, max(total // epochs, 1)
        )
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

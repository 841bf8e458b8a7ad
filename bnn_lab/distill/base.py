"""The base of every distillation method: weighted loss terms for one batch."""
from __future__ import annotations

import torch

from .losses import attention_loss, kd_loss


class Distiller:
    needs_teacher = True
    needs_features = False

    def __init__(self, ce: float = 1.0, kd: float = 0.0, attention: float = 0.0, temperature: float = 1.0,
                 layers: list[str] | None = None) -> None:
        self.weights = {"ce": float(ce), "kd": float(kd), "attention": float(attention)}
        self.temperature = float(temperature)
        self.layers = list(layers) if layers else None
        self.needs_features = self.weights["attention"] > 0

    def terms(self, student_logits, teacher_logits, student_feats, teacher_feats) -> dict[str, torch.Tensor]:
        out = {}
        if self.weights["kd"] > 0:
            out["kd"] = self.weights["kd"] * kd_loss(student_logits, teacher_logits, self.temperature)
        if self.weights["attention"] > 0:
            out["attention"] = self.weights["attention"] * attention_loss(student_feats, teacher_feats)
        return out

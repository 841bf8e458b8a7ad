"""``kd``: logit distillation (Hinton et al., "Distilling the Knowledge in a Neural Network"):
T^2 KL(softmax(z_t / T) || softmax(z_s / T)), averaged over the batch, teacher detached.
T^2 keeps the gradient's size independent of the temperature."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import LossInputs, LossTerm
from .registry import register_term


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """T^2 * KL(softmax(z_t / T) || softmax(z_s / T)), averaged over the batch; teacher detached."""
    t = float(temperature)
    log_p_s = F.log_softmax(student_logits / t, dim=-1)
    log_p_t = F.log_softmax(teacher_logits.detach() / t, dim=-1)
    return t * t * F.kl_div(log_p_s, log_p_t, log_target=True, reduction="batchmean")


@register_term("kd")
class KnowledgeDistillation(LossTerm):
    needs_teacher = True

    def __init__(self, weight: float = 1.0, temperature: float = 4.0) -> None:
        super().__init__(weight)
        self.temperature = float(temperature)

    def __call__(self, inputs: LossInputs) -> torch.Tensor:
        return kd_loss(inputs.logits, inputs.teacher_logits, self.temperature)

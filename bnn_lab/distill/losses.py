"""Distillation losses (docs/methods.md section 3), as plain functions."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """T^2 * KL(softmax(z_t / T) || softmax(z_s / T)), averaged over the batch; teacher detached."""
    t = float(temperature)
    log_p_s = F.log_softmax(student_logits / t, dim=-1)
    log_p_t = F.log_softmax(teacher_logits.detach() / t, dim=-1)
    return t * t * F.kl_div(log_p_s, log_p_t, log_target=True, reduction="batchmean")


def attention_map(a: torch.Tensor) -> torch.Tensor:
    """Q = sum over channels of A^2, flattened and L2-normalized per sample: (N, H*W)."""
    q = a.pow(2).sum(dim=1).flatten(1)
    return F.normalize(q, p=2, dim=1)


def attention_loss(student: list[torch.Tensor], teacher: list[torch.Tensor]) -> torch.Tensor:
    """Sum over blocks of the mean squared difference of Q (teacher detached)."""
    if len(student) != len(teacher):
        raise ValueError("attention matching needs as many student as teacher feature maps")
    total = student[0].new_zeros(())
    for s, t in zip(student, teacher):
        total = total + (attention_map(s) - attention_map(t.detach())).pow(2).mean()
    return total

"""``rbd``: representation binarization-aware distillation, after DIR-Net's RBD
(*Distribution-sensitive Information Retention for Accurate Binary Neural Network*, Qin et al.):
the binary student's block representations are pulled towards those of a full-precision
teacher at the same block outputs.

The paper gives no formula this code could check, so the term is one clear choice:

    RBD = mean over blocks j of mean_n || f_s^j - f_t^j ||^2,   f = vec(A) / ||vec(A)||_2

with A the output (C x H x W) of block j for sample n, flattened and L2-normalized per sample,
teacher detached. Each block contributes 2 (1 - cos(A_s, A_t)), in [0, 4]. Why this form:
binary blocks and their full-precision counterparts produce features of different magnitude
(other batch statistics, saturating binary activations), so a plain MSE would mostly match
magnitudes; normalizing per sample keeps what the representation says (which channels and
positions respond, relative to one another) and drops its overall size. Unlike attention
transfer (``attention``, which sums the squared activations over channels) it keeps the
channel dimension, where a binary network loses its information. The mean over blocks keeps
the weight's meaning independent of the depth.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .block_term import BlockTerm
from .registry import register_term


def normalized_representation(a: torch.Tensor) -> torch.Tensor:
    """vec(A) / ||vec(A)||_2 per sample: (N, C*H*W)."""
    return F.normalize(a.flatten(1), p=2, dim=1)


def rbd_loss(student: list[torch.Tensor], teacher: list[torch.Tensor]) -> torch.Tensor:
    """Mean over blocks of mean_n ||f_s - f_t||^2 (teacher detached)."""
    if len(student) != len(teacher) or not student:
        raise ValueError("representation distillation needs as many student as teacher block outputs (at least one)")
    total = student[0].new_zeros(())
    for s, t in zip(student, teacher):
        diff = normalized_representation(s) - normalized_representation(t.detach())
        total = total + diff.pow(2).sum(1).mean()
    return total / len(student)


@register_term("rbd")
class RepresentationDistillation(BlockTerm):
    """RBD on the blocks of ``layers`` (:class:`~bnn_lab.losses.block_term.BlockTerm`)."""

    def block_loss(self, student: list[torch.Tensor], teacher: list[torch.Tensor]) -> torch.Tensor:
        return rbd_loss(student, teacher)

"""``attention``: attention matching (Real-to-Binary, Martinez et al., ICLR 2020):
sum over blocks j of mean_n ||Q_s^j - Q_t^j||^2 / (H W), with Q = vec(sum_c A_c^2) / ||.||_2
the L2-normalized spatial attention map of block output A (teacher detached). It makes the
binary student put its activation energy where the real-valued teacher does."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .block_term import BlockTerm
from .registry import register_term


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


@register_term("attention")
class AttentionMatching(BlockTerm):
    """Attention transfer on the blocks of ``layers`` (:class:`~bnn_lab.losses.block_term.BlockTerm`)."""

    def block_loss(self, student: list[torch.Tensor], teacher: list[torch.Tensor]) -> torch.Tensor:
        return attention_loss(student, teacher)

"""``lcr``: Lipschitz continuity retained (*Lipschitz Continuity Retained Binary Neural Network*,
Shang et al., ECCV 2022): the binary network keeps the Lipschitz behaviour of a full-precision
network of the same architecture, measured block to block by retention matrices.

For consecutive block outputs F_i (C_i x H_i x W_i) and F_{i+1} (C_{i+1} x H x W) of one
sample, F_i is average-pooled to H x W and

    RM_i = F_i F_{i+1}^T / (H W)                    (C_i x C_{i+1}, flattened positions)
    sn_i = ||RM_i||_2 = sqrt(lambda_max(RM_i RM_i^T))  (its spectral norm)

With n blocks (n - 1 pairs, i = 1 .. n - 1),

    LCR = sum_i 2^-(n - 1 - i) mean_n (sn_i^student - sn_i^reference)^2

so the deepest pair weighs 1 and each earlier one half the next. The reference is the run's
teacher (``distill.teacher``: by default the same architecture in full precision, as in the
paper), detached. The run's loss is CE + weight x LCR; the paper divides its batch sum by
batch x 1e4 and weighs it alpha = 8 on ImageNet, which is weight 8e-4 on this batch mean;
between a ReLU teacher and a hardtanh student the spectral norms differ by an order of
magnitude, and that weight drowns the cross-entropy: the default is 1e-6 (conf/loss/lcr.yaml).

The spectral norm comes from ``iterations`` steps of power iteration on RM RM^T, run without
gradient from the unit vector of equal entries (deterministic, no state between steps: a
resumed run computes the same values); then sn = u^T RM v with the final unit vectors u, v
fixed, whose gradient u v^T is that of the spectral norm once the vectors have converged.
The block outputs of a binary network (signed, after hardtanh) give retention matrices with
close top singular values: on a binary ResNet-20's digits features 10 steps were off by 0.5 %
on average (9 % at worst), 30 steps by 0.03 % (2 % at worst), hence 30 by default. A sample's
matrix is new at every step, so a vector kept from the previous step would start no closer.
``iterations=0`` takes the exact largest singular value (``torch.linalg.matrix_norm``, an SVD
per matrix: exact, cheap for narrow blocks, slow for wide ones).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from .block_term import BlockTerm
from .registry import register_term


def retention_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """RM = pool(A) B^T / (H W) per sample: (N, C_a, C_b), for A (N, C_a, H_a, W_a) and
    B (N, C_b, H, W), A average-pooled to B's H x W."""
    if a.dim() != 4 or b.dim() != 4:
        raise ConfigError(f"lcr needs block outputs of shape (N, C, H, W), got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[-2:] != b.shape[-2:]:
        a = F.adaptive_avg_pool2d(a, b.shape[-2:])
    fa, fb = a.flatten(2), b.flatten(2)
    return fa @ fb.transpose(1, 2) / fb.shape[-1]


def spectral_norm(m: torch.Tensor, iterations: int = 30) -> torch.Tensor:
    """Largest singular value of each matrix of ``m`` (N, p, q) by power iteration (``iterations``
    steps; 0: exact, by SVD): (N,)."""
    if iterations == 0:
        return torch.linalg.matrix_norm(m, ord=2)
    with torch.no_grad():
        md = m.detach()
        v = md.new_full((m.shape[0], m.shape[2]), m.shape[2] ** -0.5)
        for _ in range(int(iterations)):
            u = F.normalize(torch.bmm(md, v.unsqueeze(2)).squeeze(2), dim=1)
            v = F.normalize(torch.bmm(md.transpose(1, 2), u.unsqueeze(2)).squeeze(2), dim=1)
        u = F.normalize(torch.bmm(md, v.unsqueeze(2)).squeeze(2), dim=1)
    return torch.bmm(u.unsqueeze(1), torch.bmm(m, v.unsqueeze(2))).reshape(-1)


def block_spectral_norms(features: list[torch.Tensor], iterations: int = 30) -> list[torch.Tensor]:
    """sn_i of every consecutive pair of block outputs: n - 1 tensors of shape (N,)."""
    return [spectral_norm(retention_matrix(a, b), iterations) for a, b in zip(features, features[1:])]


def lcr_loss(student: list[torch.Tensor], reference: list[torch.Tensor], iterations: int = 30) -> torch.Tensor:
    """sum_i 2^-(n-1-i) mean_n (sn_i(student) - sn_i(reference))^2, the reference detached."""
    if len(student) != len(reference) or len(student) < 2:
        raise ConfigError("lcr needs the same two or more consecutive blocks in the student and the reference")
    with torch.no_grad():
        ref = block_spectral_norms([r.detach() for r in reference], iterations)
    total = student[0].new_zeros(())
    norms = block_spectral_norms(student, iterations)
    pairs = len(norms)
    for i, (s, r) in enumerate(zip(norms, ref)):
        total = total + 0.5 ** (pairs - 1 - i) * (s - r).pow(2).mean()
    return total


@register_term("lcr")
class LipschitzRetention(BlockTerm):
    """LCR on the blocks of ``layers``, two or more (:class:`~bnn_lab.losses.block_term.BlockTerm`);
    ``iterations``: power-iteration steps per spectral norm (0: exact)."""

    min_blocks = 2

    def __init__(self, weight: float = 1e-6, layers: list[str] | None = None, iterations: int = 30) -> None:
        super().__init__(weight, layers)
        self.iterations = int(iterations)
        if self.iterations < 0:
            raise ConfigError(
                f"loss.lcr.iterations must be 0 (exact) or a number of power-iteration steps, got {iterations}"
            )

    def block_loss(self, student: list[torch.Tensor], teacher: list[torch.Tensor]) -> torch.Tensor:
        return lcr_loss(student, teacher, self.iterations)

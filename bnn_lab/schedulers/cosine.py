"""``cosine``: linear warm-up to the base LR over ``warmup_epochs``, then cosine decay to
``min_lr_factor`` x base LR: f(t) = m + (1 - m) (1 + cos(pi t)) / 2, t the fraction of the
post-warm-up steps done (SGDR, Loshchilov and Hutter, without restarts)."""

from __future__ import annotations

import math
from typing import Callable

from .registry import register_scheduler


def warmup_cosine(total_steps: int, warmup_steps: int, min_factor: float) -> Callable[[int], float]:
    """Linear warm-up to the base LR, then cosine decay to ``min_factor`` x base LR."""

    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        t = min(max(step - warmup_steps, 0) / max(total_steps - warmup_steps, 1), 1.0)
        return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * t))

    return factor


@register_scheduler("cosine")
def cosine(
    total_steps: int, steps_per_epoch: int, warmup_epochs: float = 0.0, min_lr_factor: float = 0.0
) -> Callable[[int], float]:
    return warmup_cosine(total_steps, int(round(warmup_epochs * steps_per_epoch)), min_lr_factor)

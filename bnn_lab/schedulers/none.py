"""``none``: a constant learning rate."""

from __future__ import annotations

from .registry import register_scheduler


@register_scheduler("none")
def none(total_steps: int, steps_per_epoch: int) -> None:
    return None

"""``none``: no teacher and no distillation term (the loss is ``loss``'s alone)."""

from __future__ import annotations

from .base import Distiller
from .registry import register_distiller


@register_distiller("none")
class NoDistillation(Distiller):
    needs_teacher = False

    def __init__(self, ce: float = 1.0, **_ignored) -> None:
        super().__init__(ce=ce)

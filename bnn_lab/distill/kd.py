"""``kd``: ce * CE + kd * T^2 KL(softmax(z_t/T) || softmax(z_s/T)) (Hinton et al. 2015)."""

from __future__ import annotations

from .base import Distiller
from .registry import register_distiller


@register_distiller("kd")
class KnowledgeDistillation(Distiller):
    def __init__(self, ce: float = 1.0, kd: float = 1.0, temperature: float = 4.0, **kw) -> None:
        super().__init__(ce=ce, kd=kd, temperature=temperature, **kw)

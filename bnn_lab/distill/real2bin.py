"""``real2bin``: Real-to-Binary (Martinez et al., ICLR 2020): ce * CE + attention * sum over
blocks of mean (Q_s - Q_t)^2 + kd * KD, with Q the L2-normalized sum over channels of A^2;
defaults from the published recipe: CE 1, attention 30, KD 3."""

from __future__ import annotations

from .base import Distiller
from .registry import register_distiller


@register_distiller("real2bin")
class RealToBinary(Distiller):
    def __init__(
        self,
        ce: float = 1.0,
        attention: float = 30.0,
        kd: float = 3.0,
        temperature: float = 1.0,
        layers: list[str] | None = None,
        **kw,
    ) -> None:
        super().__init__(ce=ce, kd=kd, attention=attention, temperature=temperature, layers=layers, **kw)

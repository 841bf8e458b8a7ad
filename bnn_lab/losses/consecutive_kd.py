"""``consecutive_kd``: distillation from assistant teachers taken one after another (BNext, Guo et
al. 2022, "Join the High Accuracy Club on ImageNet with A Binary Neural Network Ticket").

The ``teachers`` (checkpoint files or run directories, weakest first) are switched at the
fractions of training ``switch_at`` (default: equal splits, k / K). The active set is the
current assistant plus, if given, the ``main`` teacher, which teaches throughout. Each active
teacher t gives a soft-target cross-entropy per sample,

    CE_t = -T^2 sum_c softmax(z_t / T)_c log softmax(z_s / T)_c        (T = temperature = 1),

and the loss is the batch mean of sum_t a_t CE_t with per-sample weights
a = softmax_t(CE_t), detached: the teacher the student is furthest from weighs most. The
authors' code also divides by the number of active teachers; here the weights sum to 1.

The YAML sets ``loss.ce`` to 0: no label loss while the teachers are active, which is the
whole run (``loss.ce=1`` adds it back). Teachers are loaded on the first step that needs them
(any architecture, built from their run's config.yaml) and kept out of the checkpoints; the
schedule follows the progress, so a resumed run takes up the teacher it was at.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .base import LossInputs, LossTerm
from .registry import register_term


def soft_cross_entropies(student: torch.Tensor, teachers: Sequence[torch.Tensor], temperature: float = 1.0):
    """(N, K): -T^2 sum_c softmax(z_t / T) log softmax(z_s / T) for each sample and teacher."""
    t = float(temperature)
    log_p = F.log_softmax(student / t, dim=-1)
    return torch.stack([-(F.softmax(z.detach() / t, dim=-1) * log_p).sum(-1) for z in teachers], dim=1) * (t * t)


def teacher_weights(ce: torch.Tensor) -> torch.Tensor:
    """(N, K): softmax over the teachers of the per-sample cross-entropies, detached."""
    return F.softmax(ce.detach(), dim=1)


def consecutive_kd_loss(student: torch.Tensor, teachers: Sequence[torch.Tensor], temperature: float = 1.0):
    ce = soft_cross_entropies(student, teachers, temperature)
    return (teacher_weights(ce) * ce).sum(1).mean()


@register_term("consecutive_kd")
class ConsecutiveKD(LossTerm):
    loads_networks = True

    def __init__(
        self,
        weight: float = 1.0,
        teachers: Sequence[str] = (),
        main: str | None = None,
        switch_at: Sequence[float] | None = None,
        temperature: float = 1.0,
    ) -> None:
        super().__init__(weight)
        if isinstance(teachers, str):
            teachers = [teachers]
        self.teachers = [str(t) for t in teachers or ()]
        if not self.teachers:
            raise ConfigError(
                "loss.consecutive_kd.teachers: give the assistant teachers (checkpoint files or "
                "run directories), weakest first"
            )
        k = len(self.teachers)
        points = [i / k for i in range(1, k)] if switch_at is None else [float(p) for p in switch_at]
        if len(points) != k - 1 or any(not 0.0 < p < 1.0 for p in points) or points != sorted(set(points)):
            raise ConfigError(
                f"loss.consecutive_kd.switch_at: {k - 1} increasing fractions of training in (0, 1) "
                f"for {k} teachers, got {list(switch_at or [])}"
            )
        self.switch_at = points
        self.main = None if main in (None, "") else str(main)
        self.temperature = float(temperature)
        self._loaded: dict[str, nn.Module] = {}

    def active(self, progress: float) -> list[str]:
        """The teachers at ``progress`` (fraction of training done): the assistant, then the main one."""
        assistant = self.teachers[bisect.bisect_right(self.switch_at, progress)]
        return [assistant] + ([self.main] if self.main else [])

    def _network(self, path: str, inputs: LossInputs) -> nn.Module:
        if path not in self._loaded:
            net = self.network_loader(path, inputs.x.shape[-1]).to(inputs.x.device).eval().requires_grad_(False)
            self._loaded[path] = net
        return self._loaded[path]

    def __call__(self, inputs: LossInputs) -> torch.Tensor:
        paths = self.active(inputs.progress)
        for old in set(self._loaded) - set(paths):  # an assistant that has been switched off
            del self._loaded[old]
        with torch.no_grad():
            logits = [self._network(p, inputs)(inputs.x).float() for p in paths]
        return consecutive_kd_loss(inputs.logits.float(), logits, self.temperature)

"""The base of the terms that compare the student's block outputs with the teacher's."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from .base import LossInputs, LossTerm
from .features import select_points


class BlockTerm(LossTerm):
    """A term on the outputs of named blocks of the student and the same blocks of the
    teacher: ``layers`` are block names or regular expressions in forward order (None: every
    residual / dense block); ``block_loss(student, teacher)`` gets both lists in that order."""

    needs_teacher = True
    min_blocks = 1

    def __init__(self, weight: float = 1.0, layers: list[str] | None = None) -> None:
        super().__init__(weight)
        self.layers = list(layers) if layers else None
        self.points: list[str] = []

    def feature_layers(self, model: nn.Module) -> list[str]:
        self.points = select_points(model, self.layers)
        if len(self.points) < self.min_blocks:
            raise ConfigError(
                f"{self.name} needs {self.min_blocks} or more blocks, found {self.points}; "
                f"name them in loss.{self.name}.layers"
            )
        return self.points

    def __call__(self, inputs: LossInputs) -> torch.Tensor:
        return self.block_loss(
            [inputs.features[n] for n in self.points], [inputs.teacher_features[n] for n in self.points]
        )

    def block_loss(self, student: list[torch.Tensor], teacher: list[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

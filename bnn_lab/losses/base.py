"""What every loss term is given, and the base class of the terms.

The training loss is ``ce_weight * CE(logits, y) + sum_i weight_i * term_i(inputs)``; each
term is one file under ``bnn_lab/losses/`` with its formula in the docstring.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from torch import nn

NetworkLoader = Callable[[str, int], nn.Module]  # (checkpoint file or run directory, img_size) -> network in eval mode


@dataclasses.dataclass
class LossInputs:
    """One training batch as the loss terms see it.

    ``features`` / ``teacher_features``: outputs of the modules the terms asked for with
    ``feature_layers`` (by module name); ``progress``: training steps done / total, in [0, 1].
    """

    x: torch.Tensor
    y: torch.Tensor
    logits: torch.Tensor
    model: nn.Module
    progress: float = 0.0
    features: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)
    teacher_logits: torch.Tensor | None = None
    teacher_features: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)


class LossTerm:
    """A weighted addition to the training loss; ``__call__`` returns the unweighted value.

    ``needs_teacher``: the term reads the teacher's logits or features (a run without a
    teacher refuses it). ``feature_layers(model)`` names the student modules whose outputs
    the term reads (the teacher's same-named modules are captured too); called once before
    training. ``loads_networks``: the term loads trained networks by path through
    ``network_loader(path, img_size)``, which :func:`.build.build_terms` hands it (the
    assembly layer's loader, given by the training code that builds the terms).
    """

    name: str = "?"
    needs_teacher = False
    loads_networks = False
    network_loader: NetworkLoader | None = None

    def __init__(self, weight: float = 1.0) -> None:
        self.weight = float(weight)

    def feature_layers(self, model: nn.Module) -> list[str]:
        return []

    def __call__(self, inputs: LossInputs) -> torch.Tensor:
        raise NotImplementedError

"""The training epoch's running aggregates, kept in checkpoints.

``train/acc_epoch``, ``train/loss_epoch`` and ``train/<term>_epoch`` are means over all the
batches of an epoch. Lightning accumulates what is logged as a plain tensor in its own result
collection, which checkpoints do not hold: a run resumed in the middle of an epoch would
report that epoch's means over the batches after the restart only. Here they are torchmetrics
states marked persistent, so they are part of the module's ``state_dict``, saved with every
checkpoint and restored with it; Lightning computes and resets them at the epoch's end.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping

import torch
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

PREFIX = "train_epoch."  # where the states sit in the LightningModule's state_dict


class EpochMetrics(nn.Module):
    """Accuracy, the mean cross-entropy (``loss``) and the mean of each loss term (``terms``),
    weighted by batch size."""

    def __init__(self, num_classes: int, terms: Iterable[str] = ()) -> None:
        super().__init__()
        self.acc = MulticlassAccuracy(num_classes, average="micro")
        self.loss = MeanMetric()
        self.terms = nn.ModuleDict({name: MeanMetric() for name in terms})
        for metric in (self.acc, self.loss, *self.terms.values()):
            metric.persistent(True)


def fill_missing(state: MutableMapping[str, torch.Tensor], module: nn.Module) -> list[str]:
    """Adds the module's own (empty) epoch states that a checkpoint written before they were
    saved lacks, so that it still loads strictly; returns the keys added."""
    added = [k for k, v in module.state_dict().items() if k.startswith(PREFIX) and k not in state]
    own = module.state_dict()
    for key in added:
        state[key] = own[key].clone()
    return added

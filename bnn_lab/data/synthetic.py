"""Random tensors with random labels: for mechanical checks only (shapes, plumbing), never
for accuracy claims."""

from __future__ import annotations

import torch

from .base import InMemoryDataModule
from .registry import register_dataset


@register_dataset("synthetic")
class SyntheticDataModule(InMemoryDataModule):
    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 10,
        img_size: int = 32,
        n_train: int = 512,
        n_test: int = 128,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.in_chans, self.num_classes, self.img_size = in_chans, num_classes, img_size
        self.n_train, self.n_test = n_train, n_test

    def load(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(self.seed + (0 if train else 1))
        n = self.n_train if train else self.n_test
        x = torch.randn(n, self.in_chans, self.img_size, self.img_size, generator=gen)
        return x, torch.randint(0, self.num_classes, (n,), generator=gen)

"""scikit-learn's bundled digits (8x8 grey, 10 classes, 1797 images): tiny, for fast tests.

A fixed, seeded 20 % of the images is the test split; the validation split comes out of
the rest.
"""

from __future__ import annotations

import torch

from .base import InMemoryDataModule
from .registry import register_dataset


@register_dataset("digits")
class DigitsDataModule(InMemoryDataModule):
    in_chans, num_classes, img_size = 1, 10, 8
    test_fraction = 0.2

    def load(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        from sklearn.datasets import load_digits

        d = load_digits()
        x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
        y = torch.tensor(d.target, dtype=torch.long)
        perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(1234))
        n_test = int(len(y) * self.test_fraction)
        idx = perm[n_test:] if train else perm[:n_test]
        return x[idx], y[idx]

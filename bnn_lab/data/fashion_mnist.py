"""Fashion-MNIST (28x28 grey, 10 classes): 60k train (minus the validation split), 10k test.

Looked for, in order, in ``data.root`` (also under ``FashionMNIST/raw``), ``$BNN_LAB_DATA``,
and Debian's ``dataset-fashion-mnist`` package (/usr/share/datasets/fashion-mnist); only then
downloaded with torchvision (``data.download=true``).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import UserError
from .base import InMemoryDataModule
from .idx import read_idx
from .registry import register_dataset

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@register_dataset("fashion_mnist")
class FashionMNISTDataModule(InMemoryDataModule):
    in_chans, num_classes, img_size = 1, 10, 28
    classes = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

    def search_dirs(self) -> list[Path]:
        dirs = [self.root, self.root / "FashionMNIST" / "raw", self.root / "fashion-mnist"]
        env = os.environ.get("BNN_LAB_DATA")
        if env:
            dirs += [Path(env), Path(env) / "FashionMNIST" / "raw"]
        dirs.append(DEBIAN_DIR)
        return list(dict.fromkeys(dirs))

    def _find(self, stem: str) -> Path | None:
        for d in self.search_dirs():
            for candidate in (d / stem, d / f"{stem}.gz"):
                if candidate.is_file():
                    return candidate
        return None

    def load(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = (self._find(stem) for stem in FILES[train])
        if images is None or labels is None:
            if not self.download:
                looked = ", ".join(str(d) for d in self.search_dirs())
                raise UserError(
                    f"Fashion-MNIST not found (looked in {looked}); install Debian's dataset-fashion-mnist, "
                    "set data.root or BNN_LAB_DATA to a folder holding the IDX files, or set data.download=true"
                )
            return self._download(train)
        x, y = read_idx(images), read_idx(labels)
        if len(x) != len(y):
            raise UserError(f"{images} and {labels} disagree on the number of samples; download them again")
        return x.unsqueeze(1), y.long()

    def _download(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        from torchvision.datasets import FashionMNIST

        try:
            ds = FashionMNIST(str(self.root), train=train, download=True)
        except Exception as exc:  # network errors come in many types
            raise UserError(
                f"could not download Fashion-MNIST into {self.root} ({exc}); install Debian's "
                "dataset-fashion-mnist or put the IDX files into data.root"
            ) from exc
        return ds.data.unsqueeze(1), ds.targets.long()

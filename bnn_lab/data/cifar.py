"""CIFAR-10 / CIFAR-100 (32x32 RGB) through torchvision: read from ``data.root`` when it holds
``cifar-10-batches-py`` / ``cifar-100-python`` (the files torchvision downloads, checked
against their checksums), else downloaded there (``data.download=true``)."""

from __future__ import annotations

import torch

from ..errors import UserError
from ..files.plain_pickle import load_plain_pickle
from .base import InMemoryDataModule
from .registry import register_dataset


class _Cifar(InMemoryDataModule):
    in_chans, img_size = 3, 32
    tv_class = "CIFAR10"

    def __init__(self, augment: bool = True, **kwargs) -> None:
        super().__init__(augment=augment, **kwargs)

    def load(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """torchvision downloads the files and checks their checksums; the batches, pickles,
        are read as plain data (:func:`~bnn_lab.files.plain_pickle.load_plain_pickle`)."""
        import numpy as np
        import torchvision.datasets as tvd
        from torchvision.datasets.utils import check_integrity

        cls = getattr(tvd, self.tv_class)
        files = cls.train_list if train else cls.test_list
        folder = self.root / cls.base_folder
        try:
            if self.download:
                downloader = cls.__new__(cls)  # its download step alone: it unpickles nothing
                downloader.root = str(self.root)
                downloader.download()
        except Exception as exc:  # network errors come in many types, and so do unreadable files
            raise UserError(
                f"could not download {self.tv_class} in {self.root} ({type(exc).__name__}: {exc}); "
                "delete its folder and download it again"
            ) from exc
        if not all(check_integrity(str(folder / name), md5) for name, md5 in files):
            raise UserError(
                f"{self.tv_class} not found in {self.root} (Dataset not found or corrupted); set "
                "data.root to the folder holding it or data.download=true"
            )
        data, labels = [], []
        for name, _ in files:
            entry = load_plain_pickle(folder / name, f"{self.tv_class} file", encoding="latin1")
            if not isinstance(entry, dict) or "data" not in entry:
                raise UserError(f"{self.tv_class} file {folder / name} holds no images; download it again")
            data.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.extend(entry["labels"] if "labels" in entry else entry["fine_labels"])
        x = torch.from_numpy(np.concatenate(data)).contiguous()
        return x, torch.tensor(labels, dtype=torch.long)


@register_dataset("cifar10")
class CIFAR10DataModule(_Cifar):
    num_classes, tv_class = 10, "CIFAR10"


@register_dataset("cifar100")
class CIFAR100DataModule(_Cifar):
    num_classes, tv_class = 100, "CIFAR100"

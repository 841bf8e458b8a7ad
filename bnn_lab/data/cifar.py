"""CIFAR-10 / CIFAR-100 (32x32 RGB) through torchvision: read from ``data.root`` when it holds
``cifar-10-batches-py`` / ``cifar-100-python`` (the files torchvision downloads, checked
against their checksums), else downloaded there (``data.download=true``)."""
from __future__ import annotations

import torch

from ..errors import UserError
from .base import InMemoryDataModule
from .registry import register_dataset


class _Cifar(InMemoryDataModule):
    in_chans, img_size = 3, 32
    tv_class = "CIFAR10"

    def __init__(self, augment: bool = True, **kwargs) -> None:
        super().__init__(augment=augment, **kwargs)

    def load(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        import torchvision.datasets as tvd

        cls = getattr(tvd, self.tv_class)
        try:
            ds = cls(str(self.root), train=train, download=self.download)
        except RuntimeError as exc:  # "Dataset not found or corrupted"
            raise UserError(
                f"{self.tv_class} not found in {self.root} ({exc}); set data.root to the folder holding it "
                "or data.download=true"
            ) from exc
        except Exception as exc:  # network errors come in many types, and so do unreadable files
            what = "download" if self.download else "read"
            raise UserError(f"could not {what} {self.tv_class} in {self.root} ({type(exc).__name__}: {exc}); "
                            "delete its folder and download it again") from exc
        x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
        return x, torch.tensor(ds.targets, dtype=torch.long)


@register_dataset("cifar10")
class CIFAR10DataModule(_Cifar):
    num_classes, tv_class = 10, "CIFAR10"


@register_dataset("cifar100")
class CIFAR100DataModule(_Cifar):
    num_classes, tv_class = 100, "CIFAR100"

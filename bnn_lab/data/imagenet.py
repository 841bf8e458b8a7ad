"""ImageNet (or any ImageFolder tree): ``data.root`` holds ``train/`` and ``val/`` with one
folder per class. Streams from disk with worker processes (too large for memory)."""
from __future__ import annotations

from torch.utils.data import DataLoader

from ..errors import UserError
from .base import BaseDataModule
from .registry import register_dataset


@register_dataset("imagenet")
class ImageNetDataModule(BaseDataModule):
    in_chans, num_classes, img_size = 3, 1000, 224

    def __init__(self, num_classes: int = 1000, img_size: int = 224, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_classes, self.img_size = num_classes, img_size
        self.sets = {}

    def setup(self, stage: str | None = None) -> None:
        if self.sets:
            return
        from torchvision import datasets, transforms as T

        norm = T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
        train_tf = T.Compose([T.RandomResizedCrop(self.img_size), T.RandomHorizontalFlip(), T.ToTensor(), norm])
        eval_tf = T.Compose([T.Resize(int(self.img_size * 256 / 224)), T.CenterCrop(self.img_size), T.ToTensor(), norm])
        for split, tf in (("train", train_tf), ("val", eval_tf)):
            folder = self.root / split
            if not folder.is_dir():
                raise UserError(f"ImageNet folder {folder} not found; set data.root to a folder with train/ and val/")
            self.sets[split] = datasets.ImageFolder(str(folder), transform=tf)
        found = len(self.sets["train"].classes)
        if found != self.num_classes:
            raise UserError(f"{self.root}/train has {found} classes but data.num_classes={self.num_classes}")

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(self.sets[split], batch_size=self.batch_size, shuffle=shuffle,
                          num_workers=self.num_workers, pin_memory=True, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:  # ImageNet's labelled test set is the val set
        return self._loader("val", False)

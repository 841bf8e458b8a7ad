"""Data modules: one base, in-memory tensors for the small datasets.

Small datasets are loaded once into memory as normalized float tensors; batches are
gathered by index lists (no per-sample Python), and light augmentation (random crop with
padding, horizontal flip) runs batched on the batch's device.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, SequentialSampler

from ..errors import ConfigError
from .sampler import EpochBatchSampler, ResumableDataLoader

log = logging.getLogger(__name__)
DEFAULT_ROOT = "~/.cache/bnn-lab/data"


def resolve_root(root: str | None) -> Path:
    """``data.root``, else ``$BNN_LAB_DATA``, else ~/.cache/bnn-lab/data."""
    return Path(os.path.expanduser(root or os.environ.get("BNN_LAB_DATA") or DEFAULT_ROOT))


class BaseDataModule(pl.LightningDataModule):
    """Common keys of every data module; subclasses set in_chans, num_classes, img_size."""

    name = "base"
    in_chans: int = 3
    num_classes: int = 10
    img_size: int = 32

    def __init__(
        self,
        root: str | None = None,
        download: bool = True,
        batch_size: int = 128,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.root = resolve_root(root)
        self.download = download
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.in_chans, self.img_size, self.img_size)

    def check(self) -> None:
        """Reads what the run needs to know about the data (files found, classes, channels), so
        that a mistake is reported before the trainer, the logger and the model are set up."""

    def describe(self) -> str:
        """One line for the run's summary: what is trained and tested on."""
        c, h, w = self.input_shape
        return f"data {self.name}: {c}x{h}x{w}, {self.num_classes} classes"


class _IndexedBatches(Dataset):
    """dataset[list of indices] -> (images, labels) for the whole batch at once."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, idx):
        idx = torch.as_tensor(idx, device=self.y.device)  # gathered where the data lives
        return self.x[idx], self.y[idx]


class InMemoryDataModule(BaseDataModule):
    """Subclasses implement ``load(train: bool) -> (images uint8/float NCHW, labels int64)``.

    ``on_device`` (``auto``, ``true`` or ``false``): with ``auto``/``true``, when the trainer's
    root device is not the CPU (a GPU), the split tensors are copied there once in ``setup``
    and batches are gathered on it, with no host-to-device copy per batch (and no loader
    worker processes, which could not use the device); ``teardown`` puts the CPU tensors back.
    ``false`` keeps the splits on the CPU (datasets larger than the device memory).
    """

    def __init__(
        self, val_size: int | float = 0.1, augment: bool = False, on_device: bool | str = "auto", **kwargs
    ) -> None:
        super().__init__(**kwargs)
        if on_device not in ("auto", True, False):
            raise ConfigError(f"data.on_device must be auto, true or false, got {on_device!r}")
        self.val_size = val_size
        self.augment = augment
        self.on_device = on_device
        self.splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._host_splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # the CPU originals

    def load(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    def check(self) -> None:
        if not self.splits:
            self.load_splits()

    def describe(self) -> str:
        sizes = ", ".join(f"{len(y):,} {split}" for split, (_, y) in self.splits.items())
        return f"{super().describe()}; {sizes} images" if sizes else super().describe()

    def setup(self, stage: str | None = None) -> None:
        self.check()
        self.place_splits()

    def raw_splits(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Train / val / test images as floats in [0, 1] (uint8 data is divided by 255): the
        validation images are ``val_size`` images held out of ``load(train=True)`` (by ``seed``)."""
        x, y = self.load(train=True)
        x = _unit(x)
        n_val = int(round(self.val_size * len(y))) if isinstance(self.val_size, float) else int(self.val_size)
        perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(self.seed))
        val_idx, train_idx = perm[:n_val], perm[n_val:]
        tx, ty = self.load(train=False)
        return {"train": (x[train_idx], y[train_idx]), "val": (x[val_idx], y[val_idx]), "test": (_unit(tx), ty)}

    def normalization(self, train_images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and std, shaped (1, C, 1, 1): the training images' own."""
        mean = train_images.mean(dim=(0, 2, 3), keepdim=True)
        std = train_images.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
        return mean, std

    def load_splits(self) -> None:
        """Train / val / test tensors on the CPU, normalized with the training statistics."""
        raw = self.raw_splits()
        mean, std = self.normalized_by = self.normalization(raw["train"][0])
        normalized: dict[int, torch.Tensor] = {}  # a split that is another's tensors (test = val) stays shared
        for split, (x, y) in raw.items():
            if id(x) not in normalized:
                normalized[id(x)] = ((x - mean) / std).contiguous()
            self.splits[split] = (normalized[id(x)], y)

    def split_device(self) -> torch.device:
        """Where the batches are gathered: the trainer's root device if it is not the CPU and
        ``on_device`` allows it, else the CPU."""
        trainer = self.trainer
        if self.on_device is False or trainer is None:
            return torch.device("cpu")
        return trainer.strategy.root_device

    def place_splits(self) -> None:
        """Move the splits to :meth:`split_device` (once: already placed tensors stay)."""
        if not self._host_splits:
            self._host_splits = dict(self.splits)
        device = self.split_device()
        if device.type == "cpu":
            self.splits = dict(self._host_splits)
            return
        if self.num_workers:
            log.info(
                "data on %s: batches are gathered there, without loader workers (num_workers=%d ignored)",
                device,
                self.num_workers,
            )
            self.num_workers = 0
        moved: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # splits sharing tensors (test = val) still do
        for split, (x, y) in self.splits.items():
            if id(x) not in moved:
                moved[id(x)] = (x.to(device), y.to(device))  # no-op if there
            self.splits[split] = moved[id(x)]

    def teardown(self, stage: str | None = None) -> None:
        if self._host_splits:  # free the device copies; CPU users (packed evaluation) read the originals
            self.splits = dict(self._host_splits)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        ds = _IndexedBatches(*self.splits[split])
        if shuffle:  # the run seed orders the batches; the order resumes mid-epoch (data/sampler.py)
            batches = EpochBatchSampler(len(ds), self.batch_size, seed=torch.initial_seed())
            return ResumableDataLoader(ds, sampler=batches, batch_size=None, num_workers=self.num_workers)
        batches = BatchSampler(SequentialSampler(ds), self.batch_size, drop_last=False)
        return DataLoader(ds, sampler=batches, batch_size=None, num_workers=self.num_workers)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        x, y = batch
        if self.augment and self.trainer is not None and self.trainer.training:
            x = random_crop_flip(x, pad=max(self.img_size // 8, 1))
        return x, y


def _unit(x: torch.Tensor) -> torch.Tensor:
    """Floats; pixel values above 1.5 are taken for 0..255 and divided by 255."""
    x = x.float()
    return x / 255.0 if x.max() > 1.5 else x


def random_crop_flip(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Batched random crop (zero padding ``pad``) and horizontal flip, on x's device."""
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), device=x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), device=x.device)
    rows = dy[:, None] + torch.arange(h, device=x.device)[None]  # n, h
    cols = dx[:, None] + torch.arange(w, device=x.device)[None]  # n, w
    idx = torch.arange(n, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[idx, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    flip = torch.rand(n, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(-1), out).contiguous()

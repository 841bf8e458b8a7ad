"""Any ImageFolder tree: ``data.root`` holds ``train/`` (one folder per class), and optionally
``val/`` and ``test/`` with the same class folders.

Nothing about the data has to be configured: the classes are the folders of ``train/``; the
images are grey (1 channel) if all images looked at are, else RGB; the side is their median
shorter side (at most 224, images are scaled and centre-cropped to it); the per-channel mean
and std are the training images' own, computed once and cached (``data.mean``/``data.std``
set them). Validation uses ``val/``, or ``data.val_size`` images held out of ``train/``;
testing uses ``test/``, or else the validation images, which the run's summary then says.

Datasets whose images fit in ``MEMORY_BUDGET`` as float32 tensors are decoded once and held
in memory like Fashion-MNIST (batched augmentation, splits on the GPU, exact mid-epoch
resume through the global RNG state); larger ones stream from disk with ``data.num_workers``
loader workers (augmentation seeded per image, so a resumed epoch sees the same batches).
Augmentation (``data.augment``) follows the image size, see :mod:`bnn_lab.data.augment`.
"""

from __future__ import annotations

import torch
from torch.utils.data import BatchSampler, DataLoader, SequentialSampler

from ..errors import ConfigError, UserError
from . import augment, image_files
from .base import InMemoryDataModule, random_crop_flip
from .image_stream import FolderImages, KeyedEpochBatchSampler
from .registry import register_dataset
from .sampler import EpochBatchSampler, ResumableDataLoader
from .stats_cache import cached_stats, stats_key

MEMORY_BUDGET = 2 * 2**30  # bytes of float32 images held in memory at most (in_memory=auto)
STATS_SAMPLE = 5000  # streamed datasets: training images the mean and std are computed on


@register_dataset("image_folder")
class ImageFolderDataModule(InMemoryDataModule):
    name = "image_folder"

    def __init__(
        self,
        num_classes: int | None = None,
        in_chans: int | None = None,
        img_size: int | None = None,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        in_memory: bool | str = "auto",
        augment: bool = True,
        val_size: int | float = 0.1,
        **kwargs,
    ) -> None:
        super().__init__(val_size=val_size, augment=augment, **kwargs)
        if in_memory not in ("auto", True, False):
            raise ConfigError(f"data.in_memory must be auto, true or false, got {in_memory!r}")
        if (mean is None) != (std is None):
            raise ConfigError("give data.mean and data.std together (or neither: computed from the training images)")
        self.want = {"num_classes": num_classes, "in_chans": in_chans, "img_size": img_size}
        self.mean, self.std = (list(mean), list(std)) if mean is not None else (None, None)
        self.in_memory = in_memory
        self.samples: dict[str, list[image_files.Sample]] = {}
        self.sources: dict[str, str] = {}
        self.classes: list[str] = []
        self.streams: dict[str, FolderImages] = {}

    # ---------------------------------------------------------------- what is there
    def check(self) -> None:
        if self.samples:
            return
        root = self.root
        if not (root / "train").is_dir():
            what = "does not exist" if not root.exists() else "has no train/ folder"
            raise UserError(
                f"data.root={root} {what}; it must hold train/ (one folder of images per class) "
                "and may hold val/ and test/"
            )
        self.classes, train = image_files.scan(root / "train")
        train_src = "train/"
        if (root / "val").is_dir():
            _, val = image_files.scan(root / "val", self.classes)
            val_src = "val/"
        else:
            train, val = self._hold_out(train)
            train_src, val_src = f"train/ less {len(val):,} held out", f"{len(val):,} held out of train/"
        if (root / "test").is_dir():
            _, test = image_files.scan(root / "test", self.classes)
            test_src = "test/"
        else:
            test, test_src = val, f"the validation images ({val_src}; no test/ folder)"
        self.samples = {"train": train, "val": val, "test": test}
        self.sources = {"train": train_src, "val": val_src, "test": test_src}
        self._set_shape()
        if self._fits_in_memory():
            self.num_workers = 0  # batches are gathered from the tensors by index: workers would only copy
            self.load_splits()
        else:
            self._set_stats(self._stream_stats, f"{STATS_SAMPLE} streamed")
            self.streams = {
                split: FolderImages(s, self.in_chans, self.img_size, self.mean, self.std)
                for split, s in self.samples.items()
            }

    def _hold_out(self, train: list[image_files.Sample]):
        n_val = int(round(self.val_size * len(train))) if isinstance(self.val_size, float) else int(self.val_size)
        if not 0 < n_val < len(train):
            raise ConfigError(
                f"data.val_size={self.val_size} leaves no training or no validation images out of "
                f"{len(train)} in {self.root / 'train'} (or add a val/ folder)"
            )
        perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(self.seed)).tolist()
        return [train[i] for i in sorted(perm[n_val:])], [train[i] for i in sorted(perm[:n_val])]

    def _set_shape(self) -> None:
        found = len(self.classes)
        if self.want["num_classes"] is not None and int(self.want["num_classes"]) != found:
            raise UserError(
                f"{self.root / 'train'} has {found} class folders but data.num_classes="
                f"{self.want['num_classes']}; remove data.num_classes (it is inferred)"
            )
        chans, side = (None, None)
        if self.want["in_chans"] is None or self.want["img_size"] is None:
            chans, side = image_files.probe(self.samples["train"])
        self.num_classes = found
        self.in_chans = int(self.want["in_chans"] or chans)
        self.img_size = int(self.want["img_size"] or side)
        if self.in_chans not in (1, 3):
            raise ConfigError(f"data.in_chans must be 1 (grey) or 3 (RGB), got {self.in_chans}")
        if self.mean is not None and not (len(self.mean) == len(self.std) == self.in_chans):
            raise ConfigError(
                f"data.mean and data.std need {self.in_chans} values (one per channel), got {self.mean} and {self.std}"
            )

    def _fits_in_memory(self) -> bool:
        if self.in_memory != "auto":
            return bool(self.in_memory)
        n = len(self.samples["train"]) + len(self.samples["val"])
        n += len(self.samples["test"]) if self.samples["test"] is not self.samples["val"] else 0
        return n * self.in_chans * self.img_size**2 * 4 <= MEMORY_BUDGET

    # ---------------------------------------------------------------- mean and std
    def _set_stats(self, compute, method: str) -> None:
        """``self.mean``/``self.std``: as given, else cached, else ``compute()``d (``method`` names
        how, a part of the cache key)."""
        if self.mean is None:
            key = stats_key(
                [p for p, _ in self.samples["train"]], in_chans=self.in_chans, img_size=self.img_size, method=method
            )
            self.mean, self.std = cached_stats(key, compute)

    def normalization(self, train_images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        def compute():
            mean, std = super(ImageFolderDataModule, self).normalization(train_images)
            return mean.flatten().tolist(), std.flatten().tolist()

        self._set_stats(compute, "all in memory")
        shape = (1, self.in_chans, 1, 1)
        return torch.tensor(self.mean).view(shape), torch.tensor(self.std).view(shape)

    def _stream_stats(self) -> tuple[list[float], list[float]]:
        """Mean and std over up to ``STATS_SAMPLE`` training images (seeded), as evaluated."""
        train = FolderImages(self.samples["train"], self.in_chans, self.img_size, [0.0], [1.0])
        picked = torch.randperm(len(train), generator=torch.Generator().manual_seed(self.seed))[:STATS_SAMPLE]
        total = torch.zeros(self.in_chans, dtype=torch.float64)
        squares = torch.zeros(self.in_chans, dtype=torch.float64)
        from ..progress import progress_bar

        for i in progress_bar(picked.tolist(), desc="mean and std", min_total=200):
            x = train.pixels(i).double()
            total += x.mean(dim=(1, 2))
            squares += (x * x).mean(dim=(1, 2))
        mean = total / len(picked)
        std = (squares / len(picked) - mean * mean).clamp_min(1e-12).sqrt()
        return mean.tolist(), std.tolist()

    # ---------------------------------------------------------------- in memory
    def raw_splits(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        loaded: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        for split, samples in self.samples.items():
            if id(samples) not in loaded:  # test = val: decoded once
                x, y = image_files.load_all(samples, self.in_chans, self.img_size, desc=f"reading {split}/")
                loaded[id(samples)] = (x.float() / 255.0, y)
        return {split: loaded[id(samples)] for split, samples in self.samples.items()}

    def load(self, train: bool):  # pragma: no cover  (raw_splits reads the folders)
        raise NotImplementedError

    # ---------------------------------------------------------------- loaders
    def setup(self, stage: str | None = None) -> None:
        self.check()
        if not self.streams:
            self.place_splits()

    def _stream_loader(self, split: str, shuffle: bool) -> DataLoader:
        ds = self.streams[split]
        pin = torch.cuda.is_available()
        if shuffle:
            ds.seed = torch.initial_seed()
            kind = KeyedEpochBatchSampler if self.augment else EpochBatchSampler
            batches = kind(len(ds), self.batch_size, seed=torch.initial_seed())
            return ResumableDataLoader(
                ds, sampler=batches, batch_size=None, num_workers=self.num_workers, pin_memory=pin
            )
        batches = BatchSampler(SequentialSampler(ds), self.batch_size, drop_last=False)
        return DataLoader(ds, sampler=batches, batch_size=None, num_workers=self.num_workers, pin_memory=pin)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return self._stream_loader(split, shuffle) if self.streams else super()._loader(split, shuffle)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        x, y = batch
        if self.streams or not (self.augment and self.trainer is not None and self.trainer.training):
            return x, y  # streamed images are augmented as they are decoded
        if augment.is_small(self.img_size):
            return random_crop_flip(x, pad=augment.crop_pad(self.img_size)), y
        return augment.random_resized_crop_flip(x), y

    # ---------------------------------------------------------------- summary
    def describe(self) -> str:
        c, h, w = self.input_shape
        kind = "in memory" if not self.streams else f"streamed, {self.num_workers} workers"
        parts = [f"{len(self.samples[s]):,} {s} ({self.sources[s]})" for s in ("train", "val", "test")]
        aug = (
            ("pad-and-crop + flip" if augment.is_small(self.img_size) else "random resized crop + flip")
            if self.augment
            else "no augmentation"
        )
        return f"data {self.name}: {self.root}, {c}x{h}x{w}, {self.num_classes} classes, {kind}, {aug}; " + "; ".join(
            parts
        )

    @property
    def test_is_val(self) -> bool:
        return self.samples.get("test") is self.samples.get("val")

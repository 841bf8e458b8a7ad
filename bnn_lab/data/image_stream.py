"""Image folders too large for memory: decoded from disk batch by batch, in loader workers.

Training batches come from :class:`KeyedEpochBatchSampler` as ``(epoch, indices)``; each
image's augmentation is drawn from a generator seeded by (run seed, epoch, index), so a batch
is the same whichever worker decodes it and after a restart in the middle of an epoch.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from PIL import Image
from torch.utils.data import Dataset

from . import augment
from .image_files import Sample, fit, load, to_tensor
from .sampler import EpochBatchSampler

EVAL_RESIZE = 256 / 224  # large images: resized to 8/7 of the side, then centre-cropped (ImageNet's usual)


class KeyedEpochBatchSampler(EpochBatchSampler):
    """The batches of :class:`EpochBatchSampler`, each with the epoch it belongs to."""

    def __iter__(self) -> Iterator[tuple[int, list[int]]]:
        epoch = self.epoch
        for batch in super().__iter__():
            yield epoch, batch


class FolderImages(Dataset):
    """``dataset[indices]`` or ``dataset[(epoch, indices)]`` -> (normalized images, labels).

    Without an epoch (evaluation, or training with ``augment`` off) an image is fitted to the
    side (large ones first resized to 8/7 of it); with one, it is augmented as
    :mod:`bnn_lab.data.augment` describes."""

    def __init__(
        self, samples: list[Sample], in_chans: int, img_size: int, mean: list[float], std: list[float], seed: int = 0
    ) -> None:
        self.samples, self.in_chans, self.img_size, self.seed = samples, in_chans, img_size, int(seed)
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key):
        epoch, indices = key if isinstance(key, tuple) else (None, key)
        images = torch.stack([self.image(i, epoch) for i in indices])
        return images, torch.tensor([self.samples[i][1] for i in indices], dtype=torch.long)

    def pixels(self, index: int, epoch: int | None = None) -> torch.Tensor:
        """Image ``index`` as floats in [0, 1], augmented for ``epoch`` when one is given."""
        img = load(self.samples[index][0], self.in_chans)
        side = self.img_size
        if epoch is None:
            if not augment.is_small(side):
                img = fit(img, round(side * EVAL_RESIZE))
            return to_tensor(fit(img, side)).float() / 255.0
        gen = augment.image_generator(self.seed, epoch, index)
        if augment.is_small(side):
            return augment.pad_crop_flip(to_tensor(fit(img, side)).float() / 255.0, augment.crop_pad(side), gen)
        top, left, h, w = augment.resized_crop_box(img.height, img.width, gen)
        img = img.resize((side, side), Image.BILINEAR, box=(left, top, left + w, top + h))
        x = to_tensor(img).float() / 255.0
        return x.flip(-1) if float(torch.rand(1, generator=gen)) < 0.5 else x

    def image(self, index: int, epoch: int | None = None) -> torch.Tensor:
        return (self.pixels(index, epoch) - self.mean) / self.std

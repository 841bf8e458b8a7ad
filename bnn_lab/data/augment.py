"""Augmentation chosen by image size, as in the usual recipes for each kind of data.

Small images (at most ``SMALL_IMAGE`` pixels a side: MNIST, CIFAR): pad by an eighth of the
side, crop back at a random offset, flip horizontally with probability 1/2. Large images
(ImageNet): random resized crop (a box of 8 % to 100 % of the area, aspect ratio 3/4 to
4/3, scaled to the output size) and the same flip. In-memory batches are augmented batched on
their device (global torch RNG, which checkpoints hold); streamed images one at a time with a
generator seeded by (run seed, epoch, image index), so that workers and restarts see the
same crops.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SMALL_IMAGE = 64  # the same bound under which the architectures use a 3x3 stride-1 stem
SCALE = (0.08, 1.0)
RATIO = (3 / 4, 4 / 3)


def is_small(img_size: int) -> bool:
    return img_size <= SMALL_IMAGE


def crop_pad(img_size: int) -> int:
    return max(img_size // 8, 1)


def random_resized_crop_flip(x: torch.Tensor) -> torch.Tensor:
    """Batched random resized crop + horizontal flip of NCHW images, output the input's size.

    Per image: area fraction s ~ U(0.08, 1), log aspect ratio ~ U(log 3/4, log 4/3), box
    w = sqrt(s r) W, h = sqrt(s / r) H (clamped to the image), offset uniform; the box is
    resampled bilinearly (one ``grid_sample`` for the batch)."""
    n, _, h, w = x.shape
    dev = x.device
    s = torch.empty(n, device=dev).uniform_(*SCALE)
    r = torch.exp(torch.empty(n, device=dev).uniform_(math.log(RATIO[0]), math.log(RATIO[1])))
    fw = torch.sqrt(s * r).clamp(max=1.0)  # box width / image width
    fh = torch.sqrt(s / r).clamp(max=1.0)
    cx = (torch.rand(n, device=dev) * (1 - fw) + fw / 2) * 2 - 1  # box centre in [-1, 1] coordinates
    cy = (torch.rand(n, device=dev) * (1 - fh) + fh / 2) * 2 - 1
    flip = torch.where(torch.rand(n, device=dev) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3, device=dev, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 0, 2] = fw * flip, cx
    theta[:, 1, 1], theta[:, 1, 2] = fh, cy
    grid = F.affine_grid(theta, (n, x.shape[1], h, w), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def resized_crop_box(height: int, width: int, gen: torch.Generator) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a random resized crop of one image (10 tries, then the central
    square-ish box), drawn from ``gen``."""
    area = height * width
    for _ in range(10):
        target = area * float(torch.empty(1).uniform_(*SCALE, generator=gen))
        ratio = math.exp(float(torch.empty(1).uniform_(math.log(RATIO[0]), math.log(RATIO[1]), generator=gen)))
        w = int(round(math.sqrt(target * ratio)))
        h = int(round(math.sqrt(target / ratio)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=gen))
            left = int(torch.randint(0, width - w + 1, (1,), generator=gen))
            return top, left, h, w
    side = min(height, width)
    return (height - side) // 2, (width - side) // 2, side, side


def pad_crop_flip(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """One CHW image: zero-pad by ``pad``, crop back at a random offset, flip with p = 1/2."""
    _, h, w = x.shape
    dy, dx = (int(v) for v in torch.randint(0, 2 * pad + 1, (2,), generator=gen))
    out = F.pad(x, (pad, pad, pad, pad))[:, dy : dy + h, dx : dx + w]
    return out.flip(-1) if float(torch.rand(1, generator=gen)) < 0.5 else out


def image_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A generator for one image's augmentation, a function of (seed, epoch, index) alone."""
    key = (int(seed) * 1_000_003 + int(epoch)) * 2_147_483_647 + int(index)
    return torch.Generator().manual_seed(key % (2**63 - 1))

"""Image files of an ImageFolder tree: finding them, guessing channels and size, decoding.

A split folder (``train/``, ``val/``, ``test/``) holds one folder per class; every file with an
image extension below a class folder (at any depth) is one image of that class. Classes are
numbered in sorted order of their folder names, as torchvision's ImageFolder does.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import UserError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
GREY_MODES = ("1", "L", "LA", "I", "F", "I;16", "I;16B", "I;16L")
COLOUR_MODES = ("RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV")
PROBE = 64  # images looked at to guess channels and size
MAX_IMG_SIZE = 224  # a guessed size above this is cropped to it

Sample = tuple[str, int]  # (path, class index)


def class_folders(folder: Path) -> list[str]:
    return sorted(d.name for d in os.scandir(folder) if d.is_dir() and not d.name.startswith("."))


def scan(folder: Path, classes: list[str] | None = None) -> tuple[list[str], list[Sample]]:
    """(classes, samples) of one split folder; with ``classes`` (the training split's) a class
    folder that is not among them is an error."""
    found = class_folders(folder)
    if classes is None:
        classes = found
        if not classes:
            raise UserError(
                f"{folder} holds no class folders; put each class's images into a folder of its own "
                f"({folder}/<class>/<image>.png)"
            )
    else:
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise UserError(
                f"{folder} has classes that train/ lacks: {', '.join(unknown[:5])}; "
                f"the classes of train/ are {', '.join(classes[:10])}{'...' if len(classes) > 10 else ''}"
            )
    samples: list[Sample] = []
    for index, name in enumerate(classes):
        if not (folder / name).is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(folder / name):
            dirnames.sort()
            samples += [
                (os.path.join(dirpath, f), index)
                for f in sorted(filenames)
                if f.lower().endswith(EXTENSIONS) and not f.startswith(".")
            ]
    if not samples:
        raise UserError(f"{folder} holds no images ({', '.join(EXTENSIONS)})")
    return classes, samples


def open_image(path: str) -> Image.Image:
    try:
        img = Image.open(path)
        img.load()
        return img
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise UserError(f"cannot read image {path} ({exc}); remove or replace it") from exc


def is_grey(img: Image.Image) -> bool:
    if img.mode in GREY_MODES:
        return True
    if img.mode in COLOUR_MODES:
        return False
    rgb = np.asarray(img.convert("RGB"))  # palette images: grey if every colour used is
    return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())


def probe(samples: list[Sample]) -> tuple[int, int]:
    """(channels, side) guessed from up to ``PROBE`` images spread over ``samples``: 1 channel
    if all are grey, else 3; the median shorter side, at most ``MAX_IMG_SIZE``."""
    step = max(len(samples) // PROBE, 1)
    images = [open_image(path) for path, _ in samples[::step][:PROBE]]
    chans = 1 if all(is_grey(img) for img in images) else 3
    side = int(np.median([min(img.size) for img in images]))
    return chans, min(side, MAX_IMG_SIZE)


def load(path: str, in_chans: int) -> Image.Image:
    """The image at ``path`` in ``in_chans`` channels (grey ``L`` or ``RGB``)."""
    img = open_image(path)
    mode = "L" if in_chans == 1 else "RGB"
    return img if img.mode == mode else img.convert(mode)


def fit(img: Image.Image, side: int) -> Image.Image:
    """Shorter side scaled to ``side``, then the central ``side`` x ``side`` square."""
    w, h = img.size
    if min(w, h) != side:
        scale = side / min(w, h)
        w, h = max(side, round(w * scale)), max(side, round(h * scale))
        img = img.resize((w, h), Image.BILINEAR)
    if (w, h) != (side, side):
        left, top = (w - side) // 2, (h - side) // 2
        img = img.crop((left, top, left + side, top + side))
    return img


def to_tensor(img: Image.Image) -> torch.Tensor:
    """uint8 CHW."""
    arr = np.array(img, dtype=np.uint8)  # a copy: PIL's buffer is read-only
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(arr))


def load_all(samples: list[Sample], in_chans: int, side: int, desc: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image of ``samples`` decoded and fitted to ``side``: (uint8 NCHW, int64 labels)."""
    from ..progress import progress_bar

    x = torch.empty(len(samples), in_chans, side, side, dtype=torch.uint8)
    for i, (path, _) in enumerate(progress_bar(samples, desc=desc, min_total=2000)):
        x[i] = to_tensor(fit(load(path, in_chans), side))
    return x, torch.tensor([label for _, label in samples], dtype=torch.long)

"""Small ImageFolder trees of PNG files made from scikit-learn's digits (8x8 grey images,
scaled up), in grey or in colour (each class its own tint)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

TINTS = np.array([[1.0, 0.3, 0.3], [0.3, 1.0, 0.3], [0.3, 0.3, 1.0], [1.0, 1.0, 0.3], [0.3, 1.0, 1.0]])


def write_tree(root: Path, splits: dict[str, int], classes: int = 4, size: int = 16, colour: bool = False) -> dict:
    """``root/<split>/<digit>/<n>.png``: ``splits[split]`` images per class, no image in two
    splits; returns {split: [(relative path, class index)]}."""
    from sklearn.datasets import load_digits

    d = load_digits()
    written: dict[str, list] = {split: [] for split in splits}
    for c in range(classes):
        images = d.images[d.target == c]
        start = 0
        for split, n in splits.items():
            folder = root / split / f"digit{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i, img in enumerate(images[start : start + n]):
                grey = Image.fromarray((img * 255 / 16).astype(np.uint8)).resize((size, size), Image.BILINEAR)
                if colour:
                    rgb = (np.asarray(grey, dtype=np.float64)[..., None] * TINTS[c % len(TINTS)]).astype(np.uint8)
                    Image.fromarray(rgb, "RGB").save(folder / f"{i:03d}.png")
                else:
                    grey.save(folder / f"{i:03d}.png")
                written[split].append((f"{split}/digit{c}/{i:03d}.png", c))
            start += n
    return written

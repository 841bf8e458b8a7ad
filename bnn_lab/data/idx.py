"""Reader for the IDX files of MNIST-style datasets (plain or gzipped)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError

_MAGIC = {2049: 1, 2051: 3}  # labels: 1 dimension, images: 3 dimensions


def read_idx(path: Path) -> torch.Tensor:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise UserError(f"cannot read dataset file {path}: {exc}; delete it and download it again") from exc
    magic = int.from_bytes(data[:4], "big") if len(data) >= 4 else -1
    if magic not in _MAGIC:
        raise UserError(f"dataset file {path} is not an IDX file (bad header); delete it and download it again")
    ndim = _MAGIC[magic]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    expected = offset + int(np.prod(dims))
    if len(data) != expected:
        raise UserError(
            f"dataset file {path} is truncated or corrupt ({len(data)} bytes, expected {expected}); "
            "delete it and download it again"
        )
    return torch.from_numpy(np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims).copy())

"""Packed-model files: safetensors with the packed and float tensors plus metadata.

Metadata (all strings, as safetensors wants): ``format`` ("bnn-lab-packed/1"), ``arch``,
``estimator``, ``mode``, ``in_chans``, ``num_classes``, ``img_size`` and ``config`` (the
run's resolved configuration as YAML), from which ``load_packed`` rebuilds the network.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from torch import nn

from ..errors import UserError
from .pack import pack_model

FORMAT = "bnn-lab-packed/1"
PACKED_FILE = "model.packed.safetensors"


def save_packed(model: nn.Module, path: str | Path, meta: dict[str, Any]) -> Path:
    """Write a packed model (from ``pack_model``) and ``meta`` (arch, estimator, mode,
    in_chans, num_classes, img_size, config) to ``path``, atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    metadata = {"format": FORMAT}
    metadata.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()})
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(path)
    return path


def read_metadata(path: str | Path) -> dict[str, str]:
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise UserError(f"packed model {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:
        raise UserError(f"packed model {path} is corrupt or not a safetensors file ({exc}); export it again") from exc
    if meta.get("format") != FORMAT:
        raise UserError(f"{path} is not a bnn-lab packed model (format {meta.get('format')!r}, expected {FORMAT})")
    return meta


def load_packed(path: str | Path, arch: str | None = None, backend: str = "auto") -> tuple[nn.Module, dict]:
    """Rebuild the packed model stored in ``path``; ``arch`` (optional) must match."""
    from safetensors.torch import load_file

    from ..build import build_model

    meta = read_metadata(path)
    if arch is not None and meta.get("arch") != arch:
        raise UserError(f"packed model {path} is a {meta.get('arch')}, not a {arch}")
    cfg = OmegaConf.create(meta["config"])
    ints = {k: int(meta[k]) for k in ("in_chans", "num_classes", "img_size")}
    skeleton, _ = build_model(cfg, ints["in_chans"], ints["num_classes"], ints["img_size"], mode=meta.get("mode"))
    model, _ = pack_model(skeleton, backend=backend)
    try:
        state = load_file(str(path))
        model.load_state_dict(state, strict=True)
    except Exception as exc:
        raise UserError(f"packed model {path} does not match its {meta.get('arch')} network ({exc}); export it again") from exc
    return model.eval(), meta

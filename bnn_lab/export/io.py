"""Packed-model files: safetensors with the packed and float tensors plus metadata.

Metadata (all strings, as safetensors wants): ``format``, ``arch``, ``estimator``, ``precision``,
``in_chans``, ``num_classes``, ``img_size``, ``config`` (the run's resolved configuration as
YAML), from which ``load_packed`` rebuilds the network, and ``sha256``: the digest of every
other metadata value and of every tensor's name, dtype, shape and bytes (:func:`content_digest`).

A file is read as data (safetensors holds no code) and checked before it is used: its digest,
then each tensor's dtype and shape against the network its metadata describes. A truncated,
altered or inconsistent file is refused in one line (:class:`~bnn_lab.errors.UserError`), never
turned into a network that predicts something else. Files of format 1 (no digest) are still read,
with the dtype and shape checks only.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn

from ..assembly.precision import stored_precision
from ..errors import UserError
from ..files import atomic_write
from .pack import pack_model

FORMAT = "bnn-lab-packed/2"
FORMATS = ("bnn-lab-packed/1", FORMAT)  # 1: written before the digest
PACKED_FILE = "model.packed.safetensors"
DIGEST = "sha256"
INT_KEYS = ("in_chans", "num_classes", "img_size")


def content_digest(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> str:
    """SHA-256 over the metadata (``DIGEST`` aside) and every tensor's name, dtype, shape, bytes."""
    h = hashlib.sha256()
    for key in sorted(k for k in metadata if k != DIGEST):
        h.update(json.dumps([key, metadata[key]]).encode())
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(json.dumps([name, str(t.dtype), list(t.shape)]).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save_packed(model: nn.Module, path: str | Path, meta: dict[str, Any]) -> Path:
    """Write a packed model (from ``pack_model``) and ``meta`` (arch, estimator, precision,
    in_chans, num_classes, img_size, config) to ``path``, atomically (a write that cannot
    complete keeps the previous file: :func:`~bnn_lab.files.atomic_write`)."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    metadata = {"format": FORMAT}
    metadata.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()})
    metadata[DIGEST] = content_digest(tensors, metadata)
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def read_metadata(path: str | Path) -> dict[str, str]:
    """The file's metadata, checked for the keys ``load_packed`` needs (not yet the digest)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise UserError(f"packed model {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:
        raise UserError(
            f"packed model {path} is corrupt or not a safetensors file "
            f"({' '.join(str(exc).split())[:120]}); export it again"
        ) from exc
    if meta.get("format") not in FORMATS:
        raise UserError(f"{path} is not a bnn-lab packed model (format {meta.get('format')!r}, expected {FORMAT})")
    missing = [k for k in ("arch", "config", *INT_KEYS) if k not in meta]
    if stored_precision(meta) is None:
        missing.append("precision")
    if meta["format"] == FORMAT and DIGEST not in meta:
        missing.append(DIGEST)
    if missing:
        raise UserError(f"packed model {path} is corrupt: its metadata lacks {', '.join(missing)}; export it again")
    if not all(meta[k].isdigit() and 0 < int(meta[k]) < 1 << 20 for k in INT_KEYS):
        raise UserError(
            f"packed model {path} is corrupt: {', '.join(f'{k}={meta[k]!r}' for k in INT_KEYS)} "
            "are not sizes; export it again"
        )
    return meta


def _read_tensors(path: Path, meta: dict[str, str]) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
    except Exception as exc:
        raise UserError(
            f"packed model {path} is corrupt ({' '.join(str(exc).split())[:120]}); export it again"
        ) from exc
    if DIGEST in meta and content_digest(tensors, meta) != meta[DIGEST]:
        raise UserError(
            f"packed model {path} is corrupt: its content does not match its {DIGEST} digest "
            "(altered or damaged after it was written); export it again"
        )
    return tensors


def _check_against(model: nn.Module, tensors: dict[str, torch.Tensor], path: Path, arch: str) -> None:
    """Every tensor the rebuilt network has, with the same dtype and shape, and no other."""
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own))
    wrong = [
        f"{k} {tensors[k].dtype} {tuple(tensors[k].shape)} (expected {v.dtype} {tuple(v.shape)})"
        for k, v in own.items()
        if k in tensors and (tensors[k].dtype != v.dtype or tensors[k].shape != v.shape)
    ]
    if missing or unexpected or wrong:
        what = wrong[:1] or [
            f"{len(missing)} missing, {len(unexpected)} unexpected tensors, e.g. {(missing + unexpected)[0]}"
        ]
        raise UserError(f"packed model {path} does not match its {arch} network ({what[0]}); export it again")


def packed_file(path: str | Path) -> Path:
    """The packed-model file of a run directory (its ``PACKED_FILE``), or ``path`` itself if it is a file."""
    path = Path(path).expanduser()
    return path / PACKED_FILE if path.is_dir() else path


def load_packed(path: str | Path, arch: str | None = None, backend: str = "auto") -> tuple[nn.Module, dict]:
    """Rebuild the packed model stored in ``path``; ``arch`` (optional) must match."""
    from ..assembly import build_model

    path = Path(path)
    meta = read_metadata(path)
    tensors = _read_tensors(path, meta)
    if arch is not None and meta.get("arch") != arch:
        raise UserError(f"packed model {path} is a {meta.get('arch')}, not a {arch}")
    try:
        cfg = OmegaConf.create(meta["config"])
    except Exception as exc:
        raise UserError(f"packed model {path} is corrupt: its config is not YAML; export it again") from exc
    said = {k: OmegaConf.select(cfg, f"{k}.name", default=None) for k in ("arch", "estimator")}
    clash = [f"{k} {meta[k]!r} vs {v!r}" for k, v in said.items() if k in meta and v is not None and meta[k] != v]
    if clash:
        raise UserError(
            f"packed model {path} is corrupt: its metadata and its config disagree ({', '.join(clash)}); "
            "export it again"
        )
    ints = {k: int(meta[k]) for k in INT_KEYS}
    try:
        skeleton, _ = build_model(
            cfg, ints["in_chans"], ints["num_classes"], ints["img_size"], precision=stored_precision(meta)
        )
        model, _ = pack_model(skeleton, backend=backend)
    except UserError:
        raise
    except Exception as exc:  # a format-1 file (no digest) whose configuration was altered
        raise UserError(
            f"packed model {path} cannot be rebuilt from its metadata "
            f"({type(exc).__name__}: {' '.join(str(exc).split())[:120]}); export it again"
        ) from exc
    _check_against(model, tensors, path, meta["arch"])
    model.load_state_dict(tensors, strict=True)
    return model.eval(), meta

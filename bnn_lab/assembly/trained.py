"""A trained network from a bnn-lab checkpoint file or a finished run directory: the one loader
of trained networks (a distillation's teacher, the networks a loss term loads, the teacher
cache's). Built from the configuration its run wrote (``config.yaml``), in the precision it
was trained in; a checkpoint that sits in no run directory is described by the configuration
of the run that asks for it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch import nn

from ..errors import UserError
from ..files import load_checkpoint, read_json
from .model import build_model
from .precision import stored_precision

BEST_NAME = re.compile(r"best-epoch(\d+)\.ckpt")
OLD_BEST_NAME = re.compile(r"best-epoch=(\d+)\.ckpt")  # what earlier versions wrote


def _best_in(folder: Path) -> Path | None:
    """The best checkpoint in a checkpoints/ folder (the highest epoch if several); a folder
    with only the names of earlier versions is one line saying how to rename them."""
    found = [(int(m.group(1)), p) for p in folder.glob("best-epoch*.ckpt") if (m := BEST_NAME.fullmatch(p.name))]
    if found:
        return max(found)[1]
    old = sorted(p for p in folder.glob("best-epoch=*.ckpt") if OLD_BEST_NAME.fullmatch(p.name))
    if old:
        new = old[-1].name.replace("best-epoch=", "best-epoch")
        raise UserError(f"{old[-1]} has the name of an earlier version; rename it {new} (or give the file itself)")
    return None


def find_best_checkpoint(path: str | Path) -> Path:
    """The checkpoint a run was tested with. ``path``: a checkpoint file (returned as is), a
    checkpoints/ folder, or a run directory: the file its metrics.json names if it still
    exists, else the best one in ``checkpoints/``, else in the last stage's
    (``stages/<n>_<name>/checkpoints/``) of a multi-stage run."""
    path = Path(path).expanduser()
    if not path.is_dir():
        return path
    metrics = path / "metrics.json"
    if metrics.is_file():
        named = read_json(metrics, "metrics file").get("best_checkpoint")
        if named and Path(named).is_file():
            return Path(named)
    stages = sorted(
        (p for p in path.glob("stages/*") if p.name.split("_")[0].isdigit()), key=lambda p: int(p.name.split("_")[0])
    )
    for folder in (path, path / "checkpoints", *(s / "checkpoints" for s in reversed(stages))):
        best = _best_in(folder)
        if best is not None:
            return best
    raise UserError(
        f"no best checkpoint (checkpoints/best-epochNN.ckpt) in {path}; give a checkpoint file or a "
        "finished run directory"
    )


def run_config(file: Path) -> Path | None:
    """The config.yaml of the run that wrote ``file`` (``<run>/checkpoints/x.ckpt`` or
    ``<run>/stages/<n>_<name>/checkpoints/x.ckpt``); None for a file in no run directory."""
    for folder in list(file.parents)[:4]:
        if (folder / "config.yaml").is_file():
            return folder / "config.yaml"
    return None


def load_trained(
    path: str | Path,
    img_size: int,
    *,
    asking: DictConfig | None = None,
    in_chans: int | None = None,
    num_classes: int | None = None,
    what: str = "trained network",
    trust: bool = False,
    trust_hint: str | None = None,
    missing_hint: str = "train one first or give another path",
) -> nn.Module:
    """The network of ``path`` for ``img_size`` inputs, with its trained weights, in eval mode.

    ``asking``: the configuration of the run that asks; given, the network must be of its
    architecture (a teacher whose features are matched), it describes a checkpoint found in
    no run directory, and a checkpoint without a recorded precision is full precision.
    ``in_chans`` / ``num_classes``: where the checkpoint does not record them. ``trust``:
    read the file with the full pickle (:func:`bnn_lab.files.load_checkpoint`); ``trust_hint`` and
    ``missing_hint`` end the one-line errors with what the caller's user can do.
    """
    source = Path(path).expanduser()
    if not source.exists():
        raise UserError(f"{what} {path} does not exist; {missing_hint}")
    file = find_best_checkpoint(source)
    ckpt = load_checkpoint(file, what=what, trust=trust, trust_hint=trust_hint)
    meta: dict[str, Any] = ckpt.get("bnn_lab", {}) if isinstance(ckpt, dict) else {}
    found = run_config(file)
    cfg = OmegaConf.load(found) if found is not None else asking
    if cfg is None:
        raise UserError(f"no config.yaml of the run that wrote {file}: cannot tell its architecture")
    arch = meta.get("arch") or cfg.arch.name
    if asking is not None and arch != asking.arch.name:
        raise UserError(
            f"{what} {file} is a {arch} but arch.name is {asking.arch.name}; use one of the same architecture"
        )
    precision = stored_precision(meta, "fp" if asking is not None else None)
    chans, classes = meta.get("in_chans", in_chans), meta.get("num_classes", num_classes)
    if precision is None or chans is None or classes is None:
        raise UserError(f"{file} is not a bnn-lab checkpoint (no bnn_lab metadata)")
    model, _ = build_model(cfg, int(chans), int(classes), img_size, precision=precision)
    state = {k.removeprefix("model."): v for k, v in ckpt.get("state_dict", {}).items() if k.startswith("model.")}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shapes differ
        raise UserError(f"{file} does not fit arch {arch} (tensor shapes differ); same architecture needed") from exc
    if missing or unexpected:
        raise UserError(
            f"{file} does not fit arch {arch} ({len(missing)} missing, {len(unexpected)} unexpected tensors); "
            "same architecture needed"
        )
    return model.eval()

"""``resume=true``: which checkpoint a stage continues from, checked before Lightning loads it,
so that a wrong or damaged file is one clear line instead of a traceback from deep inside
Lightning."""

from __future__ import annotations

import logging
from pathlib import Path

from torch import nn

from ...errors import ConfigError, UserError
from ...files import load_checkpoint
from .checkpoints import remove_partial_files
from .epoch_metrics import PREFIX as EPOCH_STATES
from .run_dir import LAST, resume_hint

log = logging.getLogger(__name__)


def checkpoint_to_resume(ckpt_dir: Path, module: nn.Module, run_dir: Path) -> str | None:
    """``<ckpt_dir>/last.ckpt`` if it exists and fits ``module``; None (train from the start)
    if the stage never wrote one. Temporary files of a killed write are removed."""
    for p in remove_partial_files(ckpt_dir):
        log.info("removed %s, left by an interrupted checkpoint write", p)
    last = ckpt_dir / LAST
    if not last.is_file():
        log.warning(
            "resume=true but %s does not exist: this stage starts from the beginning "
            "(to continue another run, give its folder: bnn-lab resume=<run dir>)",
            last,
        )
        return None
    try:
        ckpt = load_checkpoint(last, what="resume checkpoint", mmap=True)
    except UserError as exc:
        raise UserError(f"{exc}; move it away to train this stage from the start") from exc
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or "loops" not in ckpt:
        raise UserError(
            f"{last} is not a training checkpoint of bnn-lab; move it away to train this stage from the start"
        )
    own = module.state_dict()
    missing = [k for k in own if k not in state and not k.startswith(EPOCH_STATES)]  # older checkpoints lack those
    unexpected = [k for k in state if k not in own]
    reshaped = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or reshaped:
        what = (
            f"{len(missing)} missing, {len(unexpected)} unexpected, {len(reshaped)} reshaped tensors, "
            f"e.g. {(missing + unexpected + reshaped)[0]}"
        )
        raise ConfigError(
            f"{last} does not fit this configuration ({what}); resume with the run's own overrides "
            f"({resume_hint(run_dir)})"
        )
    return str(last)


def checkpoint_step(path: str | Path) -> int:
    """The training step a checkpoint was saved at (its ``global_step``; memory-mapped, so the
    weights are not read)."""
    ckpt = load_checkpoint(path, what="resume checkpoint", mmap=True)
    return int(ckpt.get("global_step", 0))

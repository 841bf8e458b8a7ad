"""Experiment loggers (the ``logger`` config group): wandb (offline by default), csv,
tensorboard, none.

A resumed run (``resume=true``) logs into the same W&B run: the run id is kept in
``<run dir>/wandb_id.txt`` and given back to W&B with ``resume="allow"``. The csv log keeps
the stopped run's rows up to the checkpoint's step (:mod:`bnn_lab.training.safety.csv_log`);
tensorboard adds an event file next to the earlier ones.
"""

from __future__ import annotations

import logging
import os
import secrets
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..registry import Registry

log = logging.getLogger(__name__)
LOGGERS: Registry = Registry("logger")
register_logger = LOGGERS.register
logger_names = LOGGERS.names
WANDB_ID_FILE = "wandb_id.txt"


def build_logger(
    cfg: Mapping[str, Any], run_dir: Path, run_name: str, resuming: bool = False, resume_step: int | None = None
):
    """The configured logger; ``resuming``: the run continues (``resume=true``), from the
    checkpoint of training step ``resume_step`` when there is one (every logger is told both)."""
    cfg = dict(cfg)
    return LOGGERS.build(
        cfg.pop("name"), run_dir=run_dir, run_name=run_name, resuming=resuming, resume_step=resume_step, **cfg
    )


@register_logger("none")
def _none(run_dir: Path, run_name: str, resuming: bool, resume_step: int | None):
    return False


@register_logger("csv")
def _csv(run_dir: Path, run_name: str, resuming: bool, resume_step: int | None):
    from .safety.csv_log import ContinuingCSVLogger

    return ContinuingCSVLogger(save_dir=str(run_dir), name="csv", version="", resume_step=resume_step)


@register_logger("tensorboard")
def _tensorboard(run_dir: Path, run_name: str, resuming: bool, resume_step: int | None):
    from pytorch_lightning.loggers import TensorBoardLogger

    return TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version="")


def wandb_run_id(run_dir: Path, resuming: bool) -> str:
    """The W&B run id of this run directory: the stored one when resuming (the same W&B run
    continues), else ``$WANDB_RUN_ID`` (a W&B sweep agent sets it) or a new one; stored in
    ``wandb_id.txt`` (by rank 0 only)."""
    from pytorch_lightning.utilities import rank_zero_only

    file = run_dir / WANDB_ID_FILE
    stored = file.read_text().strip() if resuming and file.is_file() else ""
    if stored:
        return stored
    # else W&B's id alphabet, from the OS entropy pool: the seeded RNG streams are not touched
    run_id = os.environ.get("WANDB_RUN_ID") or "".join(
        secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8)
    )
    if rank_zero_only.rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        file.write_text(run_id + "\n")
    return run_id


def wandb_can_go_online() -> bool:
    """True when an API key is configured (env or netrc); no network call."""
    try:
        import wandb

        return bool(os.environ.get("WANDB_API_KEY") or wandb.api.api_key)
    except Exception:
        return False


@register_logger("wandb")
def _wandb(
    run_dir: Path,
    run_name: str,
    mode: str = "offline",
    project: str = "bnn-lab",
    entity: str | None = None,
    group: str | None = None,
    tags: list[str] | tuple[str, ...] = (),
    id: str | None = None,
    resuming: bool = False,
    resume_step: int | None = None,
):
    from pytorch_lightning.loggers import WandbLogger

    if mode not in ("offline", "online", "disabled"):
        raise ConfigError(f"logger.mode must be offline, online or disabled, got {mode!r}")
    if mode == "online" and not wandb_can_go_online():
        log.warning(
            "W&B: no API key (run `wandb login` or set WANDB_API_KEY); logging offline instead, "
            "sync later with `wandb sync %s/wandb`",
            run_dir,
        )
        mode = "offline"
    os.environ.setdefault("WANDB_SILENT", "true")
    import wandb

    if wandb.run is not None:  # left open by the previous job of a multirun in this process:
        wandb.finish()  # WandbLogger would otherwise log this job into that run
    logger = WandbLogger(
        name=run_name,
        project=project,
        entity=entity,
        group=group,
        tags=list(tags),
        id=id or wandb_run_id(run_dir, resuming),
        resume="allow",
        save_dir=str(run_dir),
        offline=(mode == "offline"),
        mode=mode,
        log_model=False,
    )
    # Lightning 2.6 always passes W&B's `anonymous` setting (None), which W&B 0.31 no longer has
    # and warns about at every run; leaving it out changes nothing else
    logger._wandb_init.pop("anonymous", None)
    return logger

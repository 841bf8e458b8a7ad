"""The plan of a run: its stages, and where each stage's teacher comes from, decided here once.

One stage for a plain run; for distillation, the student alone (its teacher loaded from
``distill.teacher.ckpt`` or from the teacher cache) or, with ``distill.teacher.cache=false``,
teacher + student; the list under ``stages:`` for progressive recipes (each stage initialized
from and taught by the previous one). :func:`plan_run` resolves the final stage's teacher to a
checkpoint (training it into the cache first if no run has), so that the stages that follow
only load what their plan names.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ..assembly import config_precision, stage_precision
from ..errors import ConfigError, UserError
from .safety import rng
from .teacher_cache import TEACHER_TERMS, Teacher, cache_dir, cached_teacher, given_teacher

log = logging.getLogger(__name__)
PREVIOUS = "previous"  # a stage taught by (or initialized from) the stage before it
CACHED = "cached"  # the final stage's teacher comes from the teacher cache (until plan_run resolves it)


@dataclasses.dataclass
class Stage:
    name: str
    precision: str  # bnn_lab/assembly/precision.py
    epochs: int
    lr: float | None = None
    teacher: str | None = None  # PREVIOUS, CACHED or a checkpoint / run directory
    init: str | None = None  # "previous" / "teacher": start from that network's weights
    terms: dict[str, Any] | None = None  # what this stage optimizes, like ``loss`` (None: the run's ``loss``)


OLD_STAGE_KEYS = ("loss", "distill")  # earlier versions: a distillation's name and weights; now its terms
TERMS_EXAMPLE = "terms: {ce: 1.0, kd: {weight: 3.0, temperature: 1.0}, attention: 30.0}"


def _stage_from_cfg(i: int, raw: Mapping[str, Any], cfg: DictConfig) -> Stage:
    raw = dict(raw)
    raw["precision"] = stage_precision(i, raw)  # first: an old spelling gets its own message
    old = [key for key in OLD_STAGE_KEYS if key in raw]
    if old:
        raise ConfigError(
            f"stage {i} sets {' and '.join(old)}; what a stage optimizes is its terms, those of the loss group, "
            f"e.g. {TERMS_EXAMPLE} (no terms: the run's loss)"
        )
    valid = {f.name for f in dataclasses.fields(Stage)}
    unknown = sorted(set(raw) - valid)
    if unknown:
        raise ConfigError(f"stage {i} has unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}")
    raw.setdefault("name", raw["precision"])
    raw.setdefault("epochs", int(cfg.trainer.max_epochs))
    if i > 0:
        raw.setdefault("teacher", PREVIOUS)
        raw.setdefault("init", PREVIOUS)
    return Stage(**raw)


def stage_distillation(cfg: DictConfig, stage: Stage) -> str:
    """What the metrics and reports call a stage's distillation: the run's ``distill`` preset
    where the stage has a teacher, ``none`` where it has none."""
    return str(cfg.distill.name) if stage.teacher is not None else "none"


def plan_stages(cfg: DictConfig) -> list[Stage]:
    """The stages ``cfg`` asks for, the final stage's teacher named (PREVIOUS, CACHED or the
    ``distill.teacher.ckpt`` path), nothing loaded or trained."""
    epochs = int(cfg.trainer.max_epochs)
    stages = cfg.get("stages")
    if stages:
        return [_stage_from_cfg(i, OmegaConf.to_container(s, resolve=True), cfg) for i, s in enumerate(stages)]
    distill = cfg.distill.name
    main = Stage(name="train", precision=config_precision(cfg), epochs=epochs)
    if distill == "none":
        return [main]
    teacher_cfg = cfg.distill.get("teacher") or {}
    ckpt = teacher_cfg.get("ckpt")
    main.name = "student"
    main.init = "teacher" if cfg.distill.get("init_from_teacher") else None
    if ckpt or cache_dir(cfg) is not None:  # the teacher is loaded: the run trains the student only
        main.teacher = str(ckpt) if ckpt else CACHED
        return [main]
    main.init = PREVIOUS if main.init else None  # trained here as stage 0
    main.teacher = PREVIOUS
    teacher = Stage(
        name="teacher", precision="fp", epochs=int(teacher_cfg.get("epochs", epochs)), terms=dict(TEACHER_TERMS)
    )
    return [teacher, main]


@dataclasses.dataclass
class Plan:
    stages: list[Stage]
    teacher: Teacher | None  # the final stage's teacher where it is loaded (given or cached): its cost


def plan_run(cfg: DictConfig, train: Callable[[DictConfig, Path], dict]) -> Plan:
    """:func:`plan_stages`, the final stage's teacher resolved to its checkpoint: a given one, or
    the cached one, trained first with ``train(config, run_dir)`` if new. The random state is
    left as it was: the student draws what a plain run draws, its teacher trained here or not."""
    stages = plan_stages(cfg)
    final = stages[-1]
    if final.teacher in (None, PREVIOUS):
        return Plan(stages, None)
    state = rng.capture()
    teacher = cached_teacher(cfg, train) if final.teacher == CACHED else given_teacher(final.teacher)
    rng.restore(state)
    final.teacher = str(teacher.checkpoint)
    return Plan(stages, teacher)


def init_from(model: nn.Module, state: Mapping[str, torch.Tensor]) -> list[str]:
    """Copy every tensor of ``state`` whose name and shape exist in ``model``; returns the
    names of the model's tensors that were not in ``state`` (new estimator, scale or
    activation parameters). A tensor of the same name but another shape is an error."""
    own = model.state_dict()
    clash = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if clash:
        raise UserError(f"cannot initialize from the previous stage: shapes differ for {', '.join(clash[:5])}")
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    return [k for k in own if k not in state]

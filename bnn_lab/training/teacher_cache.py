"""Full-precision teachers trained once and reused by every student that asks for the same one.

A distillation run without ``distill.teacher.ckpt`` needs the full-precision network of its own
configuration. Its training run is described by :func:`teacher_config` (the student's config
with ``precision=fp``, no distillation, ``distill.teacher.epochs`` epochs, then
``distill.teacher.overrides``) and stored under
``<cache>/<arch>-<data>-s<seed>-<key>/``, a complete run directory, where ``key`` hashes every
value that decides the teacher's weights (architecture, data and split, seed, epochs, optimizer,
schedule, trainer limits); the student's estimator, binarization and distillation weights do
not enter it, so ``-m distill=kd,real2bin`` trains one teacher per seed, not one per arm.

Safe with several runs at once (a multirun on several processes, a SLURM array): the first run
to ask takes a lock (``fcntl.flock`` on ``<cache>/.<name>.lock``), trains into a temporary
folder and renames it into place (atomic: a teacher folder is complete or absent); the others
wait for the lock and find the finished teacher. In a DDP run every process trains the teacher
together, rank 0 holding the lock and renaming the folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

from ..errors import ConfigError
from ..files import read_json, write_json
from .safety.run_dir import BOOKKEEPING_KEYS, config_digest, has_key, is_other_rank, under

log = logging.getLogger(__name__)
ENV = "BNN_LAB_TEACHERS"
DEFAULT_DIR = Path("~/.cache/bnn-lab/teachers")
MARKER = "bnn-lab-teachers.txt"  # in the cache root: bnn-lab-report leaves the folder out of the study
# values that do not change the full-precision teacher's weights: what is binarized and how, the
# student's distillation and stages, and what changes no network (bookkeeping, paths, speed)
NOT_IN_KEY = ("estimator", "binarize", "distill", "stages", *BOOKKEEPING_KEYS)
TEACHER_TERMS = {"ce": 1.0}  # a teacher trains on plain cross-entropy: the student's terms are not its own
WAIT_S = 24 * 3600  # a DDP rank other than 0 waits this long at most for rank 0's rename


@dataclass
class Teacher:
    folder: Path  # the teacher's run directory
    checkpoint: Path  # its best checkpoint (what students load)
    key: str
    trained: bool  # trained by this run (False: found in the cache)
    metrics: dict[str, Any]

    def cost(self) -> dict[str, Any]:
        """What bnn-lab-report shows as the teacher's cost, apart from the student's."""
        m = self.metrics
        return {
            "dir": str(self.folder),
            "checkpoint": str(self.checkpoint),
            "key": self.key,
            "trained_in_this_run": self.trained,
            "test/acc": m.get("test/acc"),
            "val/acc": m.get("val/acc"),
            "epochs": m.get("epochs"),
            "global_steps": m.get("global_steps"),
            "wall_time_s": m.get("wall_time_s"),
        }


def cache_dir(cfg: DictConfig) -> Path | None:
    """``distill.teacher.cache``: false: no cache (the teacher is trained inside the run, as
    its first stage); null: ``$BNN_LAB_TEACHERS``, else ~/.cache/bnn-lab/teachers; a path."""
    value = (cfg.distill.get("teacher") or {}).get("cache")
    if value is False:
        return None
    if value is None or value == "":
        return Path(os.environ.get(ENV) or DEFAULT_DIR).expanduser()
    if value is True:
        raise ConfigError("distill.teacher.cache takes a folder, null (the default folder) or false (no cache)")
    return Path(str(value)).expanduser()


def teacher_config(cfg: DictConfig) -> DictConfig:
    """The run that trains ``cfg``'s teacher: the same network in full precision, plain
    cross-entropy, ``distill.teacher.epochs`` epochs, csv log, no packed export."""
    teacher = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    epochs = int((cfg.distill.get("teacher") or {}).get("epochs") or cfg.trainer.max_epochs)
    teacher.precision, teacher.resume, teacher.stages = "fp", False, None
    teacher.distill = {"name": "none"}
    teacher.loss = dict(TEACHER_TERMS)
    teacher.trainer.max_epochs = epochs
    teacher.export.packed = False
    teacher.logger = {"name": "csv"}
    overrides = (cfg.distill.get("teacher") or {}).get("overrides") or {}
    for key, value in (OmegaConf.to_container(overrides) if OmegaConf.is_config(overrides) else overrides).items():
        if not has_key(teacher, key) or under(key, NOT_IN_KEY):
            raise ConfigError(
                f"distill.teacher.overrides.{key}: not a value of the teacher's run (it has optimizer, scheduler, "
                "trainer, data and arch keys; the student's distillation, estimator and binarization are not its own)"
            )
        OmegaConf.update(teacher, key, value, merge=False)
    return teacher


def pin_teacher(untuned: DictConfig, tuned: DictConfig, keys) -> DictConfig:
    """``tuned`` whose cached teacher trains at ``untuned``'s values of ``keys`` (those that enter
    the teacher's run), recorded as ``distill.teacher.overrides``. A tuned distillation arm then
    learns from the teacher every arm of its seed shares, not from one retrained at the student's
    tuned learning rate."""
    if str(tuned.distill.get("name", "none")) == "none" or (tuned.distill.get("teacher") or {}).get("ckpt"):
        return tuned
    if cache_dir(tuned) is None:
        return tuned
    own = teacher_config(untuned)
    pinned = {key: OmegaConf.select(own, key) for key in keys if not under(key, NOT_IN_KEY) and has_key(own, key)}
    if not pinned:
        return tuned
    out = OmegaConf.create(OmegaConf.to_container(tuned, resolve=True))
    OmegaConf.update(out, "distill.teacher.overrides", {**pinned}, merge=False)
    return out


def teacher_key(teacher_cfg: DictConfig) -> str:
    """12 hex digits of the SHA-256 of the teacher's configuration without :data:`NOT_IN_KEY`."""
    return config_digest(teacher_cfg, NOT_IN_KEY)


@contextlib.contextmanager
def _locked(path: Path):
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _found(folder: Path, key: str, trained: bool) -> Teacher:
    from ..assembly.trained import find_best_checkpoint  # torch, timm: not for bnn-lab-report, which reads MARKER

    metrics = read_json(folder / "metrics.json", "cached teacher's metrics")
    return Teacher(folder, find_best_checkpoint(folder), key, trained, metrics)


def cached_teacher(cfg: DictConfig, train: Callable[[DictConfig, Path], dict]) -> Teacher:
    """The teacher of ``cfg`` from the cache, trained with ``train(config, run_dir)`` first if
    no run has trained it yet."""
    root = cache_dir(cfg)
    if root is None:
        raise ConfigError("distill.teacher.cache is false: the teacher is trained inside the run")
    tcfg = teacher_config(cfg)
    key = teacher_key(tcfg)
    folder = root / f"{cfg.arch.name}-{cfg.data.name}-s{cfg.seed}-{key}"
    if (folder / "metrics.json").is_file():
        return _found(folder, key, trained=False)
    root.mkdir(parents=True, exist_ok=True)
    marker = root / MARKER
    if not marker.exists():
        marker.write_text(
            "Full-precision teachers of bnn-lab distillation runs, one run directory each, "
            "named <arch>-<data>-s<seed>-<hash of the teacher's configuration>. Safe to delete.\n"
        )
    partial = root / f".{folder.name}.partial"
    if is_other_rank():  # trains together with rank 0, which renames the folder
        train(tcfg, partial)
        deadline = time.time() + WAIT_S
        while not (folder / "metrics.json").is_file() and time.time() < deadline:
            time.sleep(1.0)
        return _found(folder, key, trained=True)
    with _locked(root / f".{folder.name}.lock"):
        if (folder / "metrics.json").is_file():  # trained by another run while this one waited
            return _found(folder, key, trained=False)
        shutil.rmtree(partial, ignore_errors=True)  # left by a killed run
        log.info("training the full-precision teacher %s (cached for every run that needs it)", folder.name)
        train(tcfg, partial)
        metrics_file = partial / "metrics.json"
        metrics = read_json(metrics_file, "teacher's metrics")
        if metrics.get("best_checkpoint"):  # the path it will have after the rename
            metrics["best_checkpoint"] = str(folder.absolute() / "checkpoints" / Path(metrics["best_checkpoint"]).name)
            write_json(metrics_file, metrics)
        os.replace(partial, folder)
    return _found(folder, key, trained=True)


def given_teacher(path: str) -> Teacher:
    """``distill.teacher.ckpt``: a checkpoint file or a run directory; its run's metrics when
    the checkpoint sits in a run directory's checkpoints/ folder."""
    from ..assembly.trained import find_best_checkpoint

    checkpoint = find_best_checkpoint(path)
    folder = Path(path).expanduser() if Path(path).expanduser().is_dir() else checkpoint.parent.parent
    file = folder / "metrics.json"
    metrics = read_json(file, "teacher's metrics") if checkpoint.parent.name == "checkpoints" and file.is_file() else {}
    return Teacher(folder, checkpoint, "", False, metrics)

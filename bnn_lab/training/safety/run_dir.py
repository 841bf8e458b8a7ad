"""What a run directory already holds, checked before anything is written into it: a new run
never overwrites the files of another one, and ``resume=true`` continues the same network on
the same data. Light on imports: the command line runs these checks before Hydra starts."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ...errors import ConfigError

log = logging.getLogger(__name__)
LAST = "last.ckpt"
# keys that decide the network, its data or the batch order: a checkpoint written under other
# values cannot be continued (it does not load, or it continues another experiment)
MODEL_KEYS = (
    "arch",
    "precision",
    "binarize",
    "estimator",
    "stages",
    "distill",
    "seed",
    "data.name",
    "data.batch_size",
    "data.val_size",
    "data.seed",
)
NOT_COMPARED = ("resume", "distill.teacher.trust")  # how this run reads files, not what it trains
# keys that never change the trained network: bookkeeping, where files go, speed switches (what a
# study's arms and the teacher cache's keys leave out; each adds its own)
BOOKKEEPING_KEYS = (
    "resume",
    "logger",
    "study",
    "export",
    "checkpoint",
    "compile",
    "channels_last",
    "keep_freed_memory",
    "data.root",
    "data.download",
    "data.num_workers",
    "data.on_device",
    "trainer.enable_progress_bar",
    "trainer.log_every_n_steps",
)

# keys that change no file a finished run left but its checkpoints: continuing a study with a
# checkpoint interval (as docs/results.md advises) must not train its finished runs again
NOT_A_FINISHED_RUN = ("checkpoint", "data.num_workers", "trainer.enable_progress_bar", "keep_freed_memory")


def config_digest(cfg: DictConfig, without: tuple[str, ...]) -> str:
    """12 hex digits of the SHA-256 of ``cfg`` (resolved) without the dotted keys ``without``:
    what names a cached teacher and a tuned arm."""
    tree = OmegaConf.to_container(cfg, resolve=True)
    for dotted in without:
        *parents, leaf = dotted.split(".")
        node = tree
        for part in parents:
            node = node.get(part) if isinstance(node.get(part), dict) else {}
        node.pop(leaf, None)
    return hashlib.sha256(json.dumps(tree, sort_keys=True, default=str).encode()).hexdigest()[:12]


def resume_hint(run_dir: Path) -> str:
    return f"resume with: bnn-lab resume={run_dir}"


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one dict of dotted keys."""
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: obj}


_ABSENT = object()


def has_key(cfg: DictConfig, key: str) -> bool:
    """True when the dotted ``key`` names a value of ``cfg`` (one set to null counts)."""
    return OmegaConf.select(cfg, key, default=_ABSENT) is not _ABSENT


def under(key: str, prefixes: tuple[str, ...]) -> bool:
    """True when the dotted ``key`` is one of ``prefixes`` or lies inside one."""
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def config_changes(saved_yaml: Path, cfg: DictConfig) -> list[str]:
    """``key: old -> new`` for every value that differs from the run's saved config.yaml
    (``resume`` itself and Hydra's own keys aside)."""
    if not saved_yaml.is_file():
        return []
    from ...assembly.old_spellings import PRECISION_SPELLINGS  # here: the assembly layer imports torch
    from ...assembly.precision import saved_precision

    saved = OmegaConf.to_container(OmegaConf.load(saved_yaml), resolve=True)
    old = flatten(saved)
    new = flatten(
        {
            k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
            for k, v in cfg.items()
            if k != "hydra"
        }
    )
    for flat, conf in ((old, saved), (new, cfg)):
        for spelling in PRECISION_SPELLINGS:
            flat.pop(spelling, None)
        flat["precision"] = saved_precision(conf)
        flat.setdefault("binarize.weight_norm", "none")  # a config without the key normalizes no weights
    keys = sorted((set(old) | set(new)) - set(NOT_COMPARED))
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]


def holds_a_run(run_dir: Path) -> bool:
    return (run_dir / "metrics.json").is_file() or any(
        p.is_file() for p in [run_dir / "checkpoints" / LAST, *run_dir.glob(f"stages/*/checkpoints/{LAST}")]
    )


def finished_with(run_dir: Path, cfg: DictConfig) -> bool:
    """True when ``run_dir`` holds a finished run (metrics.json) of exactly this configuration
    (``resume`` and the keys of :data:`NOT_A_FINISHED_RUN` aside): what ``resume=true`` then has
    to do is nothing. A study run again with ``resume=true`` skips its finished runs this way."""
    if not ((run_dir / "metrics.json").is_file() and (run_dir / "config.yaml").is_file()):
        return False
    changes = config_changes(run_dir / "config.yaml", cfg)
    return all(under(change.split(":")[0], NOT_A_FINISHED_RUN) for change in changes)


def is_other_rank() -> bool:
    """A DDP process other than rank 0 (Lightning and SLURM set these before it starts): it
    joins the run that rank 0 checked, and writes no files."""
    return any(os.environ.get(k, "0") != "0" for k in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


def check_run_dir(run_dir: Path, cfg: DictConfig, warn: bool = True) -> None:
    """Refuse a new run over another run's files, or a resume with another network or data;
    ``warn``: log every other changed value."""
    if not cfg.get("resume"):
        if holds_a_run(run_dir):
            raise ConfigError(
                f"{run_dir} already holds a run (metrics.json or checkpoints/{LAST}); "
                f"{resume_hint(run_dir)}, or give another hydra.run.dir"
            )
        return
    changes = config_changes(run_dir / "config.yaml", cfg)
    fatal = [c for c in changes if under(c.split(":")[0], MODEL_KEYS)]
    if fatal:
        raise ConfigError(
            f"resume=true with another network or data than the run in {run_dir} "
            f"({'; '.join(fatal[:3])}); {resume_hint(run_dir)} repeats its overrides"
        )
    for change in changes if warn else ():
        log.warning("resuming with a changed value: %s", change)

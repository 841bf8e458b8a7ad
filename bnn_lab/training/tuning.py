"""Tuning an arm before its seeds run (``study.tune=N``): every arm of a study gets the same care.

For the arm of a run (its configuration without the seed and bookkeeping), N trials of one
Optuna TPE search (sampler seed ``study.tune_sampler_seed``) run first, each a whole training
at the study's budget with seed ``TUNE_SEED + k`` (seeds no study uses for its test runs),
scored by its best validation accuracy; the test split is never read by a trial (the data
module refuses it, :func:`refuse_test_split`). The same space rule for every arm: the learning
rate log-uniform in [lr / f, lr f] around the arm's own (f = ``study.tune_lr_factor``), plus the
knobs the arm's YAML declares in ``study.tune_space`` (``{key: {low, high, log}}``, e.g.
RBONN's lambda, a loss term's weight). The run then trains at the best trial's setting with
its own seed and is tested once. The trials of an arm are shared by its seeds (the first run
of the arm tunes, under a lock, the others reuse ``tuning/<arm>/trials.json``), and a stopped
tuning continues where it was: finished trials are kept, a cut one resumes with its setting.
A distillation arm's trials and runs learn from the teacher of the arm's untuned setting, the one
every arm of the seed shares (:func:`~.teacher_cache.pin_teacher`).
"""

from __future__ import annotations

import logging
import math
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..errors import ConfigError, UserError
from ..files import read_json, write_json
from .safety.run_dir import BOOKKEEPING_KEYS, config_digest, has_key, holds_a_run
from .safety.run_lock import run_lock
from .teacher_cache import pin_teacher

log = logging.getLogger(__name__)
TUNE_SEED = 10_000  # trial k trains with seed TUNE_SEED + k; a study's own seeds stay below
TRIALS_FILE = "trials.json"
MARKER = "bnn-lab-tuning.txt"  # in a sweep's tuning/ folder: bnn-lab-report leaves the trials out of the study
PARAMS_FILE = "params.json"


class SplitRefused(UserError):
    """A tuning trial asked for the test split."""


def refuse_test_split(dm) -> None:
    """Make ``dm`` refuse its test split: a tuning trial that reads it fails instead."""

    def refused(*args, **kwargs):
        raise SplitRefused("a tuning trial asked for the test split: trials are scored on the validation split only")

    dm.test_dataloader = refused


def search_space(cfg: DictConfig) -> dict[str, tuple[float, float, bool]]:
    """``{key: (low, high, log)}``: the learning rate around the arm's own, then ``study.tune_space``."""
    lr, factor = float(cfg.optimizer.lr), float(cfg.study.get("tune_lr_factor") or 10.0)
    if lr <= 0 or factor <= 1:
        raise ConfigError(f"study.tune needs optimizer.lr > 0 and study.tune_lr_factor > 1 (got {lr}, {factor})")
    space = {"optimizer.lr": (lr / factor, lr * factor, True)}
    declared = cfg.study.get("tune_space")
    declared = OmegaConf.to_container(declared, resolve=True) if OmegaConf.is_config(declared) else dict(declared or {})
    for key, spec in declared.items():
        if not isinstance(spec, dict) or not {"low", "high"} <= set(spec):
            raise ConfigError(f"study.tune_space.{key} needs low and high (and log: true for a log-uniform range)")
        if not has_key(cfg, key):
            raise ConfigError(f"study.tune_space.{key}: the configuration has no key {key}")
        low, high, log_scale = float(spec["low"]), float(spec["high"]), bool(spec.get("log", False))
        if not low < high or (log_scale and low <= 0):
            raise ConfigError(f"study.tune_space.{key}: need low < high (and low > 0 with log), got {low}, {high}")
        space[key] = (low, high, log_scale)
    return space


def arm_key(cfg: DictConfig) -> str:
    """12 hex digits naming the arm: the configuration without the seed and the bookkeeping."""
    return config_digest(cfg, ("seed", *BOOKKEEPING_KEYS))


def with_params(cfg: DictConfig, params: dict[str, float]) -> DictConfig:
    """``cfg`` at a trial's setting; its cached teacher stays the arm's own (:func:`pin_teacher`)."""
    out = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    for key, value in params.items():
        OmegaConf.update(out, key, value, merge=False)
    return pin_teacher(cfg, out, params)


def _distributions(space: dict[str, tuple[float, float, bool]]):
    from optuna.distributions import LogUniformDistribution, UniformDistribution

    return {
        k: (LogUniformDistribution if log else UniformDistribution)(low, high) for k, (low, high, log) in space.items()
    }


def _replay(study, distributions, params: dict[str, float], arm: str, k: int):
    """Ask the sampler for trial ``k`` again, as the tuning that drew it did, so that its random state
    moves on as it did then (a fresh sampler would draw trial 0's setting again for the next trial).
    Returns that trial, or None where the sampler draws another setting than the recorded one (a
    record written otherwise): that ask is marked failed, which the sampler ignores, and the recorded
    setting stands, with a warning."""
    from optuna.trial import TrialState

    asked = study.ask(distributions)
    if set(asked.params) == set(params) and all(
        math.isclose(asked.params[key], float(value), rel_tol=1e-9) for key, value in params.items()
    ):
        return asked
    study.tell(asked, state=TrialState.FAIL)
    log.warning(
        "tuning %s: trial %d's recorded setting %s is not what the sampler draws again (%s): it stands as recorded",
        arm,
        k,
        params,
        asked.params,
    )
    return None


def _tell(study, asked, trial: dict[str, Any], distributions) -> None:
    """The study learns a finished trial's score: through its asked trial, or added as recorded."""
    if asked is not None:
        study.tell(asked, trial["val/acc"])
        return
    import optuna

    try:
        params, value = trial["params"], trial["val/acc"]
        recorded = optuna.trial.create_trial(params=params, distributions=distributions, value=value)
    except ValueError as exc:  # a setting outside today's space: study.tune_space or tune_lr_factor changed
        raise UserError(
            f"a recorded tuning trial {trial['params']} lies outside the search space {distributions}: the space "
            "changed since the arm was tuned; remove its tuning folder to tune it again"
        ) from exc
    study.add_trial(recorded)


def tune_arm(cfg: DictConfig, run_dir: Path, train: Callable[..., dict[str, Any]]) -> tuple[DictConfig, dict[str, Any]]:
    """``cfg`` at its arm's best trial and what the tuning did (``{}`` with ``study.tune`` unset);
    ``train(config, run_dir, test=False)`` trains a trial."""
    trials_wanted = int(cfg.get("study", {}).get("tune") or 0)
    if trials_wanted <= 0:
        return cfg, {}
    if "ddp" in str(cfg.trainer.get("strategy") or ""):
        raise ConfigError("study.tune runs its trials in one process: tune with trainer=default (or trainer=gpu)")
    if int(cfg.seed) >= TUNE_SEED:
        raise ConfigError(f"seed {cfg.seed}: seeds from {TUNE_SEED} on are the tuning trials'; test with smaller ones")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # create_trial, add_trial
    space = search_space(cfg)
    distributions = _distributions(space)
    folder = run_dir.parent / "tuning" / arm_key(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder.parent / MARKER
    if not marker.exists():
        marker.write_text(
            "Tuning trials of the study's arms (study.tune), one folder per arm: trials.json and a run folder "
            "per trial, scored on the validation split. Not test runs: bnn-lab-report shows them through the "
            "runs' metrics.json (tuning).\n"
        )
    with run_lock(folder):
        record = folder / TRIALS_FILE
        trials: list[dict[str, Any]] = read_json(record, "tuning trials")["trials"] if record.is_file() else []
        study = optuna.create_study(
            direction="maximize", sampler=optuna.samplers.TPESampler(seed=int(cfg.study.get("tune_sampler_seed") or 0))
        )
        for t in trials:  # replayed: the sampler then draws what it drew in an unbroken tuning
            _tell(study, _replay(study, distributions, t["params"], folder.name, t["trial"]), t, distributions)
        while len(trials) < trials_wanted:
            k = len(trials)
            trial_dir = folder / f"trial_{k}"
            params_file = trial_dir / PARAMS_FILE
            resume = params_file.is_file() and holds_a_run(trial_dir)
            if resume:  # cut mid-way: continue it with the setting it had
                params = read_json(params_file, "trial setting")
                asked = _replay(study, distributions, params, folder.name, k)
                log.info("tuning %s: trial %d continues (%s)", folder.name, k, params)
            else:
                shutil.rmtree(trial_dir, ignore_errors=True)
                asked = study.ask(distributions)
                params = asked.params
                trial_dir.mkdir(parents=True)
                write_json(params_file, params)
                log.info("tuning %s: trial %d of %d: %s", folder.name, k + 1, trials_wanted, params)
            trial_cfg = with_params(cfg, params)
            trial_cfg.seed, trial_cfg.resume = TUNE_SEED + k, resume
            metrics = train(trial_cfg, trial_dir, test=False)
            value = metrics.get("val/acc")
            if value is None:
                raise UserError(f"tuning trial {trial_dir} recorded no val/acc: trials need a validation split")
            _tell(study, asked, {"params": params, "val/acc": value}, distributions)
            trials.append(
                {
                    "trial": k,
                    "params": params,
                    "val/acc": value,
                    "seed": TUNE_SEED + k,
                    "global_steps": metrics["global_steps"],
                }
            )
            write_json(
                record, {"arm": folder.name, "space": {key: list(r) for key, r in space.items()}, "trials": trials}
            )
    scored = trials[:trials_wanted]
    best = max(scored, key=lambda t: t["val/acc"])  # the first of equals
    summary = {
        "arm": folder.name,
        "params": best["params"],
        "best_trial": best["trial"],
        "best_val_acc": best["val/acc"],
        "trials": len(scored),
        "steps": sum(int(t["global_steps"]) for t in scored),
    }
    log.info("tuned %s: trial %d, %s (val/acc %.4f)", folder.name, best["trial"], best["params"], best["val/acc"])
    return with_params(cfg, best["params"]), summary

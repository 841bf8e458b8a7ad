"""A run: data, then its stages (model, surgery, summary, fit, test), then metrics.json."""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities import rank_zero_only
from torch import nn

from ..assembly import build_data, build_model, config_precision, load_trained
from ..assembly.old_spellings import refuse_old_keys
from ..errors import ConfigError
from ..files import load_checkpoint, read_json, torch_save, write_json
from ..losses import build_terms
from ..plugins import load_plugins
from ..progress import is_terminal, wanted
from ..summary import summarize
from .callbacks import CALLBACKS, EstimatorProgress, build_callbacks
from .epoch_log import EpochLog
from .heap import keep_freed_memory
from .loggers import build_logger
from .module import ClassificationModule
from .safety import rng
from .safety.checkpoint_io import AtomicCheckpointIO
from .safety.checkpoints import LastCheckpoint, best_checkpoint
from .safety.data_position import TrainLoaderPosition
from .safety.preemption import PreemptionCheckpoint, cluster_plugins, exit_on_sigterm
from .safety.resume import checkpoint_step, checkpoint_to_resume
from .safety.run_dir import check_run_dir, finished_with, resume_hint
from .safety.run_lock import run_lock
from .stages import PREVIOUS, Stage, init_from, plan_run, stage_distillation
from .tuning import refuse_test_split

log = logging.getLogger(__name__)
FINAL_WEIGHTS = "final_weights.pt"
RNG_AT_END = "rng_state.pt"  # multi-stage runs: the RNG states when a stage ended, for the next one on resume


def is_rank_zero() -> bool:
    """False in the other processes of a DDP run: they train but write no files (Lightning sets
    the rank from LOCAL_RANK / SLURM_PROCID before the trainer exists)."""
    return rank_zero_only.rank == 0


def run_name(cfg: DictConfig) -> str:
    precision = "fp" if config_precision(cfg) == "fp" else cfg.estimator.name
    return f"{cfg.arch.name}-{precision}-{cfg.data.name}-s{cfg.seed}"


def _trainer(cfg: DictConfig, stage: Stage, run_dir: Path, logger, callbacks) -> pl.Trainer:
    kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    kwargs["max_epochs"] = stage.epochs
    kwargs["enable_progress_bar"] = wanted(kwargs.get("enable_progress_bar"))  # auto: on a terminal only
    plugins = [AtomicCheckpointIO(), *cluster_plugins()]  # crash-safe files; SLURM requeue on SIGUSR1
    try:
        return pl.Trainer(**kwargs, logger=logger, callbacks=callbacks, default_root_dir=str(run_dir), plugins=plugins)
    except TypeError as exc:
        raise ConfigError(f"bad trainer option: {exc}") from exc


class _StageRunner:
    """Runs the stages of one run in order, handing weights and teachers along."""

    def __init__(self, cfg: DictConfig, run_dir: Path, dm, test: bool = True) -> None:
        self.cfg, self.run_dir, self.dm, self.test = cfg, run_dir, dm, test

    def run_all(self, stages: list[Stage]) -> tuple[nn.Module, list[dict[str, Any]]]:
        """Every stage in order, each handed the network of the one before; returns the final
        network and the metrics of each stage."""
        previous, per_stage = None, []
        for i, stage in enumerate(stages):
            previous, metrics = self.run(i, stage, len(stages), previous)
            per_stage.append(metrics)
        return previous, per_stage

    def stage_dir(self, index: int, stage: Stage, n_stages: int) -> Path:
        return self.run_dir if n_stages == 1 else self.run_dir / "stages" / f"{index}_{stage.name}"

    def teacher_for(self, stage: Stage, previous: nn.Module | None) -> nn.Module | None:
        """The network the plan names: the previous stage's, or the one in the stage's checkpoint."""
        if stage.teacher is None:
            return None
        if stage.teacher == PREVIOUS:
            return copy.deepcopy(previous)
        dm, state = self.dm, rng.capture()
        teacher = load_trained(
            stage.teacher,
            dm.img_size,
            asking=self.cfg,
            in_chans=dm.in_chans,
            num_classes=dm.num_classes,
            what="teacher checkpoint",
            trust=bool(OmegaConf.select(self.cfg, "distill.teacher.trust", default=False)),
            trust_hint="add distill.teacher.trust=true",
            missing_hint="train one first or drop distill.teacher.ckpt",
        )
        rng.restore(state)  # building the teacher drew its init: the student's draws stay those of a plain run
        return teacher

    def run(self, index: int, stage: Stage, n_stages: int, previous: nn.Module | None):
        """Train and test one stage in its folder; returns its network (the tested weights) and
        metrics. A finished stage of a resumed recipe is reused as it is."""
        cfg, dm = self.cfg, self.dm
        out = self.stage_dir(index, stage, n_stages)
        out.mkdir(parents=True, exist_ok=True)
        model, report = build_model(cfg, dm.in_chans, dm.num_classes, dm.img_size, precision=stage.precision)
        if cfg.get("channels_last"):
            model.to(memory_format=torch.channels_last)
        if n_stages > 1 and cfg.get("resume"):
            finished = self.finished_stage(out, stage, model)
            if finished is not None:
                return model, finished
        start = time.time()
        teacher = self.teacher_for(stage, previous)
        self.start_from(model, stage, index, previous, teacher)
        summary = self.write_summary(out, model, report, stage, index, n_stages)
        lit = self.module(model, stage, teacher)
        resume_from = checkpoint_to_resume(out / "checkpoints", lit, self.run_dir) if cfg.get("resume") else None
        if resume_from:
            log.info("resuming stage %s from %s", stage.name, resume_from)
        logger = build_logger(
            cfg.logger,
            out,
            run_name(cfg) + ("" if n_stages == 1 else f"-{stage.name}"),
            resuming=bool(cfg.get("resume")),
            resume_step=checkpoint_step(resume_from) if resume_from else None,
        )
        best_cb, callbacks = self.callbacks(out)
        trainer = _trainer(cfg, stage, out, logger, callbacks)
        if logger:
            logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
            logger.log_metrics({f"summary/{k}": float(v) for k, v in summary.totals.items()}, step=0)
        results, best = self.fit_and_test(trainer, lit, best_cb, resume_from)
        if is_rank_zero():
            torch_save(model.state_dict(), out / FINAL_WEIGHTS)  # the tested (best) weights
        metrics = self.stage_metrics(results, best_cb, best, stage, trainer, summary, start)
        self.record(out, metrics, logger, n_stages)
        return model, metrics

    def finished_stage(self, out: Path, stage: Stage, model: nn.Module) -> dict[str, Any] | None:
        """The metrics of a stage that a resumed recipe finished before (its tested weights loaded
        into ``model``, the RNG as it was when the stage ended); None where it did not finish."""
        done = out / "metrics.json"
        if not (done.is_file() and (out / FINAL_WEIGHTS).is_file()):
            return None
        model.load_state_dict(load_checkpoint(out / FINAL_WEIGHTS, what="stage weights"))
        log.info("stage %s already finished: reusing %s", stage.name, out / FINAL_WEIGHTS)
        if (out / RNG_AT_END).is_file():  # the next stage draws what it drew in the unbroken run
            rng.load(out / RNG_AT_END)
        return read_json(done, "stage metrics")

    def start_from(
        self, model: nn.Module, stage: Stage, index: int, previous: nn.Module | None, teacher: nn.Module | None
    ) -> None:
        """``stage.init``: copy the previous stage's or the teacher's weights into ``model``."""
        if stage.init not in (PREVIOUS, "teacher"):
            return
        source = previous if stage.init == PREVIOUS else teacher
        fresh = init_from(model, source.state_dict())
        origin = "teacher" if stage.init == "teacher" else f"stage {index - 1}"
        log.info("stage %s starts from the %s's weights (%d new tensors)", stage.name, origin, len(fresh))

    def write_summary(self, out: Path, model: nn.Module, report, stage: Stage, index: int, n_stages: int):
        """The data, the surgery and the model summary: printed, and written to summary.txt."""
        dm = self.dm
        summary = summarize(model, dm.input_shape)
        header = f"stage {index} ({stage.name}, {stage.precision}): " if n_stages > 1 else ""
        header += str(report) if report is not None else "full precision: no surgery"
        header = f"{dm.describe()}\n{header}"
        if is_rank_zero():
            (out / "summary.txt").write_text(f"{header}\n\n{summary.table()}\n")
            print(f"{header}\n{summary.table()}", flush=True)
        return summary

    def module(self, model: nn.Module, stage: Stage, teacher: nn.Module | None) -> ClassificationModule:
        """The LightningModule of the stage: its optimizer (the stage's lr), its terms, its teacher."""
        cfg, dm = self.cfg, self.dm
        optimizer = dict(cfg.optimizer)
        if stage.lr is not None:
            optimizer["lr"] = stage.lr
        meta = {
            "arch": cfg.arch.name,
            "precision": stage.precision,
            "num_classes": dm.num_classes,
            "in_chans": dm.in_chans,
            "stage": stage.name,
        }
        loss = stage.terms if stage.terms is not None else OmegaConf.to_container(cfg.loss, resolve=True)
        lit = ClassificationModule(model, dm.num_classes, optimizer, cfg.scheduler, teacher, meta, loss)
        if cfg.get("compile"):
            lit.compile_model()
        return lit

    def callbacks(self, out: Path) -> tuple[ModelCheckpoint, list[pl.Callback]]:
        """Every run's callbacks, then ``optimizer.clip_latent``'s and the configured ``callbacks``.
        Every run's: the best checkpoint (first: written before last.ckpt at epoch ends), last.ckpt,
        the preemption checkpoint, RNG state and data position (bit-exact resume), the
        estimators' progress, the one-line epoch log."""
        cfg = self.cfg
        best = best_checkpoint(out / "checkpoints")
        last = LastCheckpoint(out / "checkpoints", cfg.checkpoint.every_n_train_steps)
        every_run = [
            best,
            last,
            PreemptionCheckpoint(last.save, resume_hint(self.run_dir)),
            rng.RngState(),
            TrainLoaderPosition(),
            EstimatorProgress(),
            EpochLog(),
        ]
        extra = (["latent_clip"] if cfg.optimizer.get("clip_latent", False) else []) + list(cfg.get("callbacks") or [])
        return best, every_run + build_callbacks(list(dict.fromkeys(extra)))

    def fit_and_test(self, trainer: pl.Trainer, lit, best_cb: ModelCheckpoint, resume_from):
        """Fit (from ``resume_from`` if given), then test the best checkpoint: (test results, its path);
        a tuning trial is not tested (no results)."""
        hint = resume_hint(self.run_dir)
        with exit_on_sigterm(hint):
            trainer.fit(lit, datamodule=self.dm, ckpt_path=resume_from, weights_only=True)
        best = best_cb.best_model_path or None
        if not self.test:
            return {}, best
        with exit_on_sigterm(hint):
            results = trainer.test(lit, datamodule=self.dm, ckpt_path=best, verbose=False, weights_only=True)[0]
        return results, best

    def stage_metrics(self, results, best_cb, best, stage: Stage, trainer, summary, start: float) -> dict[str, Any]:
        """What metrics.json of the stage holds (docs/configuration.md)."""
        cfg = self.cfg
        metrics: dict[str, Any] = {k: float(v) for k, v in results.items()}
        if best_cb.best_model_score is not None:
            metrics["val/acc"] = float(best_cb.best_model_score)
        metrics.update(
            stage=stage.name,
            precision=stage.precision,
            epochs=int(trainer.current_epoch),
            global_steps=int(trainer.global_step),
            wall_time_s=round(time.time() - start, 2),
            arch=cfg.arch.name,
            estimator=None if stage.precision == "fp" else cfg.estimator.name,
            data=cfg.data.name,
            distill=stage_distillation(cfg, stage),
            seed=int(cfg.seed),
            summary=summary.totals,
            best_checkpoint=best,
        )
        return metrics

    def record(self, out: Path, metrics: dict[str, Any], logger, n_stages: int) -> None:
        """metrics.json, the W&B summary, and for recipes the RNG state the next stage starts from."""
        if not is_rank_zero():
            return
        write_json(out / "metrics.json", metrics)
        if logger and self.cfg.logger.name == "wandb":
            logger.experiment.summary.update({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        if n_stages > 1:
            rng.save(out / RNG_AT_END)


def export_device(choice: str) -> torch.device:
    """Where the packed model is evaluated: ``cpu`` (numba kernels), ``cuda`` (Triton kernels) or
    ``auto`` (cuda where there is a GPU)."""
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice not in ("cpu", "cuda"):
        raise ConfigError(f"export.device must be auto, cpu or cuda, got {choice!r}")
    return torch.device(choice)


def _export(cfg: DictConfig, model: nn.Module, stage: Stage, dm, run_dir: Path, metrics: dict) -> None:
    """Pack the final model, write model.packed.safetensors and evaluate it: ``packed/test_acc``."""
    if not cfg.export.packed or stage.precision == "fp" or not is_rank_zero():
        return
    from ..export import PACKED_FILE, evaluate, inference_model, pack_model, save_packed

    device = export_device(cfg.export.get("device", "cpu"))
    packed, report = pack_model(model.cpu(), backend=cfg.export.backend)
    log.info("%s", report)
    meta = {
        "arch": cfg.arch.name,
        "estimator": cfg.estimator.name,
        "precision": stage.precision,
        "in_chans": dm.in_chans,
        "num_classes": dm.num_classes,
        "img_size": dm.img_size,
        "config": OmegaConf.to_yaml(cfg, resolve=True),
    }
    save_packed(packed, run_dir / PACKED_FILE, meta)
    deployed = inference_model(packed).to(device)  # what bnn-lab-eval and load_for_inference run
    result = evaluate(deployed, dm.test_dataloader(), progress=is_terminal(), device=device)
    metrics["packed/test_acc"] = result["acc"]
    metrics["packed/layers"] = len(report.packed)
    metrics["packed/file"] = PACKED_FILE
    if metrics.get("test/acc") is not None and abs(result["acc"] - metrics["test/acc"]) > 1e-6:
        log.warning("packed test accuracy %.4f differs from the float one %.4f", result["acc"], metrics["test/acc"])


def train(cfg: DictConfig, run_dir: Path, test: bool = True, tuning: dict | None = None) -> dict[str, Any]:
    """Train and test the configured model (all its stages); everything lands in ``run_dir``,
    which no other run may write meanwhile (:func:`~bnn_lab.training.safety.run_lock.run_lock`).
    ``test=False``: a tuning trial, scored on validation; its test split is refused. ``tuning``:
    what :func:`.tuning.tune_arm` chose for ``cfg``, recorded in metrics.json."""
    if not is_rank_zero():  # joins the run rank 0 checked and holds
        return _train(cfg, run_dir, test)
    with run_lock(run_dir):
        check_run_dir(run_dir, cfg)  # before any write: never over another run's files
        if cfg.get("resume") and finished_with(run_dir, cfg):
            log.info("%s already finished with this configuration: nothing to do (its metrics.json stands)", run_dir)
            return read_json(run_dir / "metrics.json", "metrics file")
        return _train(cfg, run_dir, test, tuning)


def _train(cfg: DictConfig, run_dir: Path, test: bool = True, tuning: dict | None = None) -> dict[str, Any]:
    """Set up, plan, run the stages, pack: each step hands its result to the next one."""
    start = time.time()
    dm = _set_up(cfg, run_dir, test)
    plan = plan_run(cfg, train)  # the stages, the teacher resolved once (trained into the cache if new)
    model, per_stage = _StageRunner(cfg, run_dir, dm, test).run_all(plan.stages)
    if plan.teacher is not None:  # its cost, apart from the student's
        per_stage[-1]["teacher"] = plan.teacher.cost()
    final = per_stage[0] if len(plan.stages) == 1 else dict(per_stage[-1])
    if test:
        _export(cfg, model, plan.stages[-1], dm, run_dir, final)
    if tuning:
        final["tuning"] = tuning
    if len(plan.stages) > 1:
        _add_stages(final, cfg, plan.stages, per_stage, start)
    if is_rank_zero():
        write_json(run_dir / "metrics.json", final)
    return final


def _set_up(cfg: DictConfig, run_dir: Path, test: bool):
    """Check what can be checked before any training (old keys, plugins, data, callbacks, loss
    terms), seed, write config.yaml; returns the data module."""
    refuse_old_keys(cfg)  # a YAML file that still says distill.kd: 3 would add the key and be ignored
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    if cfg.get("keep_freed_memory", True):
        keep_freed_memory()
    load_plugins(cfg.get("plugins"))  # first: plugins may register data modules too
    dm = build_data(cfg)  # data mistakes end the run here, before anything else is set up
    if not test:
        refuse_test_split(dm)
    if is_rank_zero():
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        log.info("if this run stops, %s", resume_hint(run_dir))
    for name in cfg.get("callbacks") or []:  # a misspelt callback fails now, like a misspelt term
        CALLBACKS.get(name)
    if "loss" in cfg:  # a misspelt term or option fails now, not after a teacher stage
        build_terms(
            {k: v for k, v in OmegaConf.to_container(cfg.loss, resolve=True).items() if k != "ce"},
            network_loader=load_trained,
        )
    return dm


def _add_stages(
    final: dict[str, Any], cfg: DictConfig, stages: list[Stage], per_stage: list[dict], start: float
) -> None:
    """A recipe's metrics.json: the judged (last) stage's metrics plus every stage's line."""
    final.update(
        stages=[
            {
                "name": s.name,
                "precision": s.precision,
                "epochs": m["epochs"],
                "global_steps": m.get("global_steps"),
                "wall_time_s": m.get("wall_time_s"),
                "test/acc": m.get("test/acc"),
                "distill": stage_distillation(cfg, s),
            }
            for s, m in zip(stages, per_stage)
        ],
        distill=cfg.distill.name,
        epochs=sum(m["epochs"] for m in per_stage),
        wall_time_s=round(time.time() - start, 2),
    )

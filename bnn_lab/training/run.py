"""One training run: data, model, surgery, summary, fit, test, metrics.json."""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint

from ..errors import ConfigError, UserError
from ..summary import summarize
from .build import build_data, build_model
from .callbacks import EstimatorProgress, LatentClip
from .loggers import build_logger
from .module import ClassificationModule

log = logging.getLogger(__name__)


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def run_name(cfg: DictConfig) -> str:
    precision = "fp" if cfg.get("fp") else cfg.estimator.name
    return f"{cfg.arch.name}-{precision}-{cfg.data.name}-s{cfg.seed}"


def _trainer(cfg: DictConfig, run_dir: Path, logger, callbacks) -> pl.Trainer:
    kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    try:
        return pl.Trainer(**kwargs, logger=logger, callbacks=callbacks, default_root_dir=str(run_dir))
    except TypeError as exc:
        raise ConfigError(f"bad trainer option: {exc}") from exc


def train(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train and test the configured model; everything lands in ``run_dir``."""
    start = time.time()
    run_dir.mkdir(parents=True, exist_ok=True)
    if not os.access(run_dir, os.W_OK):
        raise UserError(f"output directory {run_dir} is not writable; set hydra.run.dir to a writable folder")
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))

    dm = build_data(cfg)
    model, report = build_model(cfg, dm.in_chans, dm.num_classes, dm.img_size)
    summary = summarize(model, dm.input_shape)
    header = str(report) if report is not None else "full precision (fp=true): no surgery"
    (run_dir / "summary.txt").write_text(f"{header}\n\n{summary.table()}\n")
    print(f"{header}\n{summary.table()}", flush=True)

    lit = ClassificationModule(model, dm.num_classes, cfg.optimizer, cfg.scheduler)
    logger = build_logger(cfg.logger, run_dir, run_name(cfg))
    ckpt_cb = ModelCheckpoint(
        dirpath=str(run_dir / "checkpoints"), filename="best-{epoch:02d}", monitor="val/acc", mode="max",
        save_last=True, save_top_k=1, every_n_train_steps=cfg.checkpoint.every_n_train_steps,
    )
    callbacks = [ckpt_cb, EstimatorProgress()]
    if cfg.optimizer.get("clip_latent", False):
        callbacks.append(LatentClip())
    trainer = _trainer(cfg, run_dir, logger, callbacks)
    if logger:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        logger.log_metrics({f"summary/{k}": float(v) for k, v in summary.totals.items()}, step=0)

    resume_from = None
    last = run_dir / "checkpoints" / "last.ckpt"
    if cfg.get("resume") and last.is_file():
        resume_from = str(last)
        log.info("resuming from %s", last)
    trainer.fit(lit, datamodule=dm, ckpt_path=resume_from)
    best = ckpt_cb.best_model_path or None
    results = trainer.test(lit, datamodule=dm, ckpt_path=best, verbose=False)[0]

    metrics: dict[str, Any] = {k: float(v) for k, v in results.items()}
    if ckpt_cb.best_model_score is not None:
        metrics["val/acc"] = float(ckpt_cb.best_model_score)
    metrics.update(
        epochs=int(trainer.current_epoch),
        global_steps=int(trainer.global_step),
        wall_time_s=round(time.time() - start, 2),
        arch=cfg.arch.name, estimator=None if cfg.get("fp") else cfg.estimator.name,
        data=cfg.data.name, distill=cfg.distill.name, seed=int(cfg.seed), fp=bool(cfg.get("fp")),
        summary=summary.totals,
        best_checkpoint=best,
    )
    write_json_atomic(run_dir / "metrics.json", metrics)
    if logger and hasattr(logger, "experiment") and cfg.logger.name == "wandb":
        logger.experiment.summary.update({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
    return metrics

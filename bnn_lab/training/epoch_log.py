"""One log line per epoch (``epoch 2/3: train/loss 0.41, val/acc 0.85 (1m 05s)``): what a run
stands at, in its log file and in redirected output, where no progress bar is drawn.

A run continued in the middle of an epoch gets no epoch-start hook for that epoch (Lightning
skips it), so that epoch's time counts from the resume and its line says so."""

from __future__ import annotations

import logging
import time

import pytorch_lightning as pl

log = logging.getLogger("bnn_lab.training")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


class EpochLog(pl.Callback):
    def on_train_start(self, trainer, pl_module) -> None:
        self.start = time.time()
        self.since = f" since resuming at step {trainer.global_step}" if trainer.global_step else ""

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.start, self.since = time.time(), ""

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        values = {
            k.removesuffix("_epoch"): float(v)
            for k, v in trainer.callback_metrics.items()
            if not k.endswith("_step") and getattr(v, "numel", lambda: 1)() == 1
        }
        shown = ", ".join(f"{k} {v:.4f}" for k, v in sorted(values.items()))
        elapsed = _duration(time.time() - self.start) + self.since
        log.info("epoch %d/%d: %s (%s)", trainer.current_epoch + 1, trainer.max_epochs, shown, elapsed)

"""A test callback, registered as ``step_counter`` when imported (``plugins=[...]``): counts the
training batches it sees and writes the count to ``<run dir>/steps_seen.txt`` at the end of fit."""

from pathlib import Path

import pytorch_lightning as pl

from bnn_lab.training.callbacks import register_callback


@register_callback("step_counter")
class StepCounter(pl.Callback):
    def __init__(self) -> None:
        self.seen = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seen += 1

    def on_fit_end(self, trainer, pl_module) -> None:
        Path(trainer.default_root_dir, "steps_seen.txt").write_text(str(self.seen))

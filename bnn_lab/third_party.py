"""Messages of the libraries bnn-lab runs on that tell its user nothing, silenced one by one
where they come from (by library, module and text, never by category alone), so that a run's
output holds what matters. Each entry says what it is and why it does not matter here."""

from __future__ import annotations

import logging
import re
import warnings

# (category, text, module that warns)
_WARNINGS = [
    # pytorch_lightning 2.6's pytree helper builds torch's LeafSpec, deprecated in torch 2.14: a
    # FutureWarning at every fit, about Lightning's code, not the user's
    (FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated", r"pytorch_lightning\.utilities\._pytree"),
    # small datasets (fewer batches per epoch than log_every_n_steps): bnn-lab logs every
    # epoch's metrics anyway, so there is nothing to change
    (
        UserWarning,
        r"The number of training batches \(\d+\) is smaller than the logging interval",
        r"pytorch_lightning\.loops\.fit_loop",
    ),
]

# logger name -> patterns of the INFO records that are dropped (matched at the start of the text)
_LOG_RECORDS = {
    "pytorch_lightning.utilities.rank_zero": (
        r"💡 Tip:",  # an advertisement for another logging service
        r"TPU available:",  # bnn-lab does not run on TPUs
        r"`Trainer\((val_check_interval|limit_\w+_batches)=1\.0\)` was configured",  # the defaults, restated
        r"Loading `train_dataloader` to estimate",  # an internal step (the LR schedule's length)
    ),
    # said when a checkpoint is *written* with the optimizer and loop state, which resuming needs;
    # it is not about loading (bnn-lab reads every checkpoint as data: bnn_lab/files/checkpoint.py)
    "pytorch_lightning.trainer.connectors.checkpoint_connector": (r"`weights_only` was not set",),
}


class _DropKnown(logging.Filter):
    def __init__(self, patterns: tuple[str, ...]) -> None:
        super().__init__()
        self.pattern = re.compile("|".join(f"(?:{p})" for p in patterns))

    def filter(self, record: logging.LogRecord) -> bool:
        return self.pattern.match(str(record.getMessage())) is None


def silence_known_noise() -> None:
    """Installs the filters above (once per process)."""
    for category, text, module in _WARNINGS:
        warnings.filterwarnings("ignore", message=text, category=category, module=module)
    for name, patterns in _LOG_RECORDS.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropKnown) for f in logger.filters):
            logger.addFilter(_DropKnown(patterns))

"""A resumed run's ``csv/metrics.csv`` continues the stopped run's rows.

Lightning's CSV writer deletes an existing ``metrics.csv`` when it starts, so a run resumed
after a crash would keep only what it logged after the restart (curves starting mid-run,
epochs missing from ``bnn-lab-report``). Here the stopped run's rows are read first and
written back before the first save: the rows up to the checkpoint's step are kept, those
the stopped run logged after it are dropped (the resumed run trains those steps again and
logs them itself), and rows that the resumed run logs again identically (the model summary
at step 0) are not doubled.
"""
from __future__ import annotations

import csv
import warnings
from pathlib import Path

from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.utilities import rank_zero_only


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of a metrics.csv (empty if there is none)."""
    if not path.is_file():
        return [], []
    with open(path, newline="") as file:
        reader = csv.DictReader(file)
        return list(reader.fieldnames or []), list(reader)


def _step(row: dict) -> float:
    try:
        return float(row.get("step") or 0)
    except ValueError:
        return 0.0


def _same(old: dict[str, str], new: dict) -> bool:
    """The resumed run logs ``new`` exactly as the stopped one logged ``old``."""
    filled = {k: v for k, v in old.items() if v not in ("", None)}
    return filled.keys() == {k for k, v in new.items() if v is not None} and \
        all(str(new[k]) == v or _float_eq(new[k], v) for k, v in filled.items())


def _float_eq(a, b: str) -> bool:
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return False


class _ContinuingWriter(ExperimentWriter):
    def __init__(self, log_dir: str, earlier: tuple[list[str], list[dict[str, str]]], resume_step: int) -> None:
        with warnings.catch_warnings():  # "previous log files ... will be deleted": they are kept
            warnings.simplefilter("ignore")
            super().__init__(log_dir)  # removes the file: its rows were read before
        self._earlier: tuple[list[str], list[dict[str, str]]] | None = earlier
        self._resume_step = resume_step

    def save(self) -> None:
        if self._earlier is not None and self.metrics:
            keys, rows = self._earlier
            self._earlier = None
            kept = [r for r in rows if _step(r) <= self._resume_step]
            self.metrics = [m for m in self.metrics if not any(_same(r, m) for r in kept)]
            if kept:
                self.metrics_keys = sorted(keys)
                with self._fs.open(self.metrics_file_path, "w", newline="") as file:
                    writer = csv.DictWriter(file, fieldnames=self.metrics_keys)
                    writer.writeheader()
                    writer.writerows(kept)
        super().save()


class ContinuingCSVLogger(CSVLogger):
    """A CSVLogger that, resumed from the checkpoint of step ``resume_step``, keeps the rows
    the stopped run logged up to that step."""

    def __init__(self, *args, resume_step: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._resume_step = resume_step

    @property
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None and self._resume_step is not None and rank_zero_only.rank == 0:
            earlier = read_rows(Path(self.log_dir) / ExperimentWriter.NAME_METRICS_FILE)
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ContinuingWriter(self.log_dir, earlier, self._resume_step)
        return super().experiment

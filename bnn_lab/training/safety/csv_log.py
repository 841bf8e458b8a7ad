"""A resumed run's ``csv/metrics.csv`` continues the stopped run's rows.

Lightning's CSV writer deletes an existing ``metrics.csv`` when it starts, so a run resumed
after a crash would keep only what it logged after the restart (curves starting mid-run,
epochs missing from ``bnn-lab-report``). Here the file is never deleted: when the writer
starts, the file is rewritten (through a rename) with the stopped run's rows up to the
checkpoint's step. Rows logged after that step are dropped (the resumed run trains those
steps again and logs them itself), and rows that the resumed run logs again identically (the
model summary at step 0) are not doubled. A run stopped again before its first save, even
while the checkpoint is still loading, keeps every row.
"""

from __future__ import annotations

import csv
import os
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
    return filled.keys() == {k for k, v in new.items() if v is not None} and all(
        str(new[k]) == v or _float_eq(new[k], v) for k, v in filled.items()
    )


def _float_eq(a, b: str) -> bool:
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return False


class _ContinuingWriter(ExperimentWriter):
    """Keeps the stopped run's rows up to ``resume_step`` in ``metrics.csv`` from the moment it
    starts (rewritten in place by a rename), so a run stopped again before its first save loses
    nothing; the first save then drops the rows the resumed run logs again identically."""

    def __init__(self, log_dir: str, resume_step: int) -> None:
        self._resume_step = resume_step
        super().__init__(log_dir)  # calls _check_log_dir_exists, which sets self._kept

    def _check_log_dir_exists(self) -> None:
        """Lightning deletes the file here; instead keep the rows up to the checkpoint."""
        path = Path(self.metrics_file_path)
        keys, rows = read_rows(path)
        self._kept = [r for r in rows if _step(r) <= self._resume_step]
        if not self._kept:
            path.unlink(missing_ok=True)
            return
        self.metrics_keys = sorted(keys)
        partial = path.with_suffix(".csv.partial")
        with open(partial, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=self.metrics_keys)
            writer.writeheader()
            writer.writerows(self._kept)
        os.replace(partial, path)

    def save(self) -> None:
        if self._kept and self.metrics:
            self.metrics = [m for m in self.metrics if not any(_same(r, m) for r in self._kept)]
            self._kept = []
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
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ContinuingWriter(self.log_dir, self._resume_step)
        return super().experiment

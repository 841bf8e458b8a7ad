"""Finds the runs under a folder and reads what each one wrote: metrics.json, config.yaml, the
Hydra overrides it was started with and, when the run logged with ``logger=csv``, its curves
per epoch and per optimizer step (``logger=none`` and W&B's binary offline files give none)."""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..assembly.precision import saved_precision, stored_precision
from ..files import read_json
from ..files.json_file import DamagedFile
from ..training.teacher_cache import MARKER
from ..training.tuning import MARKER as TUNING_MARKER

# the table's columns, in order: (column, where the value comes from)
COLUMNS = [
    "run",
    "estimator",
    "arch",
    "distill",
    "data",
    "seed",
    "precision",
    "test_acc",
    "test_acc5",
    "val_acc",
    "binary_params",
    "size_deployed_mb",
    "compression",
    "epochs",
    "wall_time_s",
]


@dataclass
class Curve:
    """Per-epoch values of one metric; epochs of later stages follow those of earlier ones."""

    epochs: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)


@dataclass
class StepCurve:
    """Values of one metric by optimizer step of the run's final stage (the judged network)."""

    steps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)


@dataclass
class Run:
    path: Path
    name: str
    metrics: dict[str, Any]
    config: dict[str, Any]
    curves: dict[str, Curve]
    csv_logs: list[Path]
    overrides: list[str] | None = None  # .hydra/overrides.yaml: how the run was started
    step_curves: dict[str, StepCurve] = field(default_factory=dict)

    @property
    def precision(self) -> str:
        """The judged network's precision: metrics.json's ``precision`` (``mode`` or ``fp: true`` in
        files that earlier versions wrote), else the run's configuration."""
        m = self.metrics
        return stored_precision(m) or ("fp" if m.get("fp") else saved_precision(self.config))

    @property
    def estimator(self) -> str:
        if self.precision == "fp":
            return "fp"
        return str(self.metrics.get("estimator") or _cfg(self.config, "estimator.name"))

    def row(self) -> dict[str, Any]:
        m, summary = self.metrics, self.metrics.get("summary") or {}
        return {
            "run": self.name,
            "estimator": self.estimator,
            "arch": m.get("arch") or _cfg(self.config, "arch.name"),
            "distill": m.get("distill") or _cfg(self.config, "distill.name") or "none",
            "data": m.get("data") or _cfg(self.config, "data.name"),
            "seed": m.get("seed", _cfg(self.config, "seed")),
            "precision": self.precision,
            "test_acc": _num(m.get("test/acc")),
            "test_acc5": _num(m.get("test/acc5")),
            "val_acc": _num(m.get("val/acc")),
            "binary_params": summary.get("binary_params"),
            "size_deployed_mb": _num(summary.get("size_deployed_mb")),
            "compression": _num(summary.get("compression")),
            "epochs": m.get("epochs"),
            "wall_time_s": _num(m.get("wall_time_s")),
        }


def _num(value) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _cfg(config: dict, dotted: str):
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def natural_key(text: str) -> list:
    """``2_x`` before ``10_x``: multirun job folders in the order Hydra launched them."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def find_run_dirs(root: Path) -> list[Path]:
    """Every folder under ``root`` (``root`` included) with a metrics.json, except the
    per-stage folders inside a run (``stages/<n>_<name>/``), which belong to their run
    (finished or still training its later stages), a
    teacher cache (a folder with bnn-lab-teachers.txt): teachers are shown as the cost of
    the runs that used them, and a sweep's tuning trials (a folder with bnn-lab-tuning.txt):
    they are scored on validation, never tested, and shown through the runs' ``tuning``."""
    caches = [p.parent for marker in (MARKER, TUNING_MARKER) for p in root.rglob(marker)]
    runs: list[Path] = []
    for path in sorted(root.rglob("metrics.json"), key=lambda p: (len(p.parts), str(p))):
        folder = path.parent
        if any(folder.is_relative_to(r) and folder != r for r in runs) or any(folder.is_relative_to(c) for c in caches):
            continue
        if folder.parent.name == "stages" and (folder.parent.parent / "config.yaml").is_file():
            continue  # a stage of a run that has not finished yet
        runs.append(folder)
    return sorted(runs, key=lambda p: natural_key(str(p)))


def _read_step_curves(path: Path) -> dict[str, StepCurve]:
    """``*_step`` columns (``train/loss_step`` becomes ``train/loss``) and ``val/*`` by the
    ``step`` column of a Lightning CSVLogger file."""
    curves: dict[str, StepCurve] = {}
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            step = _num(row.get("step"))
            if step is None:
                continue
            for key, raw in row.items():
                if not key or not raw or not (key.startswith("val/") or key.endswith("_step")):
                    continue
                value = _num(raw)
                if value is not None:
                    curve = curves.setdefault(key.removesuffix("_step"), StepCurve())
                    curve.steps.append(int(step))
                    curve.values.append(value)
    return curves


def _read_csv_curves(paths: list[Path]) -> dict[str, Curve]:
    """Epoch-level values from Lightning CSVLogger files: ``val/*`` and ``*_epoch`` columns
    (``train/loss_epoch`` becomes ``train/loss``)."""
    curves: dict[str, Curve] = {}
    offset = 0.0
    for path in paths:
        last_epoch = -1.0
        with path.open(newline="") as fh:
            for row in csv.DictReader(fh):
                epoch = _num(row.get("epoch"))
                if epoch is None:
                    continue
                last_epoch = max(last_epoch, epoch)
                for key, raw in row.items():
                    if not key or not raw or not (key.startswith("val/") or key.endswith("_epoch")):
                        continue
                    value = _num(raw)
                    if value is None:
                        continue
                    name = key[: -len("_epoch")] if key.endswith("_epoch") else key
                    curve = curves.setdefault(name, Curve())
                    curve.epochs.append(offset + epoch + 1)  # epoch 0 ends after 1 epoch of training
                    curve.values.append(value)
        offset += last_epoch + 1
    return curves


def checked_metrics(file: Path) -> dict[str, Any]:
    """metrics.json of a run, refused in one line (:class:`~bnn_lab.files.json_file.DamagedFile`)
    when it is not JSON, or an accuracy is not a number in [0, 1], or ``summary`` is not a table
    of numbers: a damaged file never becomes a wrong row."""
    metrics = read_json(file, "metrics file")
    for key, value in metrics.items():
        if key.split("/")[-1].startswith("acc") or key.endswith("_acc"):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0
            ):
                raise DamagedFile(
                    f"metrics file {file} has {key} = {value!r}, not an accuracy in [0, 1]; "
                    "move the run away or run it again"
                )
    summary = metrics.get("summary")
    if summary is not None and not (
        isinstance(summary, dict)
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in summary.values())
    ):
        raise DamagedFile(
            f"metrics file {file} has a summary that is not a table of numbers; move the run away or run it again"
        )
    return metrics


def load_run(folder: Path, root: Path) -> Run:
    metrics = checked_metrics(folder / "metrics.json")
    config_file = folder / "config.yaml"
    if not config_file.is_file():
        config_file = folder / ".hydra" / "config.yaml"
    config = yaml.safe_load(config_file.read_text()) if config_file.is_file() else {}
    logs = (
        [folder / "csv" / "metrics.csv"]
        if (folder / "csv" / "metrics.csv").is_file()
        else sorted(
            (folder / "stages").glob("*/csv/metrics.csv"),
            key=lambda p: int(p.parts[-3].split("_")[0]) if p.parts[-3].split("_")[0].isdigit() else 0,
        )
    )
    name = str(folder.relative_to(root)) if folder != root else folder.name
    overrides_file = folder / ".hydra" / "overrides.yaml"
    overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else None
    return Run(
        folder,
        name,
        metrics,
        config or {},
        _read_csv_curves(logs),
        logs,
        [str(o) for o in overrides] if isinstance(overrides, list) else None,
        _read_step_curves(logs[-1]) if logs else {},
    )


def collect_runs(root: str | Path) -> list[Run]:
    root = Path(root)
    return [load_run(folder, root) for folder in find_run_dirs(root)]

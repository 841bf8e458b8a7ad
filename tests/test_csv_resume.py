"""The csv log of a resumed run keeps the stopped run's rows up to the checkpoint's step
(Lightning's writer alone deletes the file when it starts)."""

from __future__ import annotations

import csv
from pathlib import Path

from bnn_lab.training.loggers import build_logger

HEADER = ["epoch", "step", "summary/params", "train/loss_step", "val/acc"]


def write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=HEADER)
        writer.writeheader()
        writer.writerows(rows)


def read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as file:
        return [{k: v for k, v in row.items() if v} for row in csv.DictReader(file)]


def stopped_run(run_dir: Path) -> None:
    """Summary at step 0, losses every 20 steps to 59, a validation at step 41; killed after
    the checkpoint of step 45."""
    write(
        run_dir / "csv" / "metrics.csv",
        [
            {"step": 0, "summary/params": 272186.0},
            {"epoch": 0, "step": 19, "train/loss_step": 1.5},
            {"epoch": 0, "step": 39, "train/loss_step": 1.25},
            {"epoch": 0, "step": 40, "val/acc": 0.5},
            {"epoch": 1, "step": 59, "train/loss_step": 0.75},
        ],
    )


KEPT = [  # the stopped run's rows up to the checkpoint of step 45
    {"step": "0", "summary/params": "272186.0"},
    {"epoch": "0", "step": "19", "train/loss_step": "1.5"},
    {"epoch": "0", "step": "39", "train/loss_step": "1.25"},
    {"epoch": "0", "step": "40", "val/acc": "0.5"},
]


def test_resumed_log_keeps_rows_up_to_the_checkpoint_and_drops_repeats(tmp_path):
    stopped_run(tmp_path)
    logger = build_logger({"name": "csv"}, tmp_path, "run", resuming=True, resume_step=45)
    logger.log_metrics({"summary/params": 272186.0}, step=0)  # logged again by the resumed run
    logger.log_metrics({"train/loss_step": 0.8, "epoch": 1}, step=59)  # step 59 trained again
    logger.log_metrics({"train/acc_step": 0.9, "epoch": 1}, step=79)  # a key the file did not have
    logger.save()
    assert read(tmp_path / "csv" / "metrics.csv") == KEPT + [
        {"epoch": "1", "step": "59", "train/loss_step": "0.8"},
        {"epoch": "1", "step": "79", "train/acc_step": "0.9"},
    ]


def test_a_new_run_in_the_folder_starts_its_own_log(tmp_path):
    stopped_run(tmp_path)
    logger = build_logger({"name": "csv"}, tmp_path, "run", resuming=False, resume_step=None)
    logger.log_metrics({"train/loss_step": 2.0, "epoch": 0}, step=19)
    logger.save()
    assert read(tmp_path / "csv" / "metrics.csv") == [{"epoch": "0", "step": "19", "train/loss_step": "2.0"}]


def test_a_resumed_run_stopped_before_its_first_save_keeps_the_rows(tmp_path):
    """The writer starts while the checkpoint loads; a SIGTERM there must not cost the log."""
    stopped_run(tmp_path)
    logger = build_logger({"name": "csv"}, tmp_path, "run", resuming=True, resume_step=45)
    _ = logger.experiment  # the writer starts; no save follows
    assert read(tmp_path / "csv" / "metrics.csv") == KEPT
    assert sorted(p.name for p in (tmp_path / "csv").iterdir()) == ["metrics.csv"]

"""bnn-lab-report on runs the suite trains: the 2x1 multirun of test_multirun (digits, csv logs)."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from test_multirun import digits_grid  # noqa: F401  (session fixture: one multirun for both files)

from bnn_lab.report import collect_runs, main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _valid_png(path: Path) -> tuple[int, int]:
    assert path.read_bytes()[:8] == PNG_MAGIC, path
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        image.load()
        assert image.format == "PNG"
        return image.size


def test_report_of_a_multirun(digits_grid, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "report"
    main([str(digits_grid), "--out", str(out)])
    printed = capsys.readouterr().out
    assert "2 runs" in printed and str(out / "report.md") in printed
    assert not (digits_grid / "report.md").exists(), "--out must be honoured"

    jobs = {p.parent.name: json.loads(p.read_text()) for p in digits_grid.glob("*/metrics.json")}
    rows = list(csv.DictReader((out / "runs.csv").open()))
    assert len(rows) == len(jobs) == 2  # one row per run
    for row in rows:
        m = jobs[row["run"]]
        assert (row["estimator"], row["arch"], row["distill"], row["data"]) == (
            m["estimator"],
            m["arch"],
            m["distill"],
            "digits",
        )
        assert float(row["test_acc"]) == pytest.approx(m["test/acc"])
        assert int(row["binary_params"]) == m["summary"]["binary_params"] > 0
        assert float(row["size_deployed_mb"]) == pytest.approx(m["summary"]["size_deployed_mb"])
        assert int(row["epochs"]) == m["epochs"] == 1 and int(row["seed"]) == m["seed"]

    md = (out / "report.md").read_text()
    run_lines = [line for line in md.splitlines() if line.startswith("| ") and "_resnet20_" in line]
    assert len(run_lines) == 2
    assert "![accuracy.png](accuracy.png)" in md and "![curves.png](curves.png)" in md
    assert "no training curve" not in md  # both runs logged csv curves
    w, h = _valid_png(out / "accuracy.png")
    assert w > 200 and h > 100
    _valid_png(out / "curves.png")
    runs = collect_runs(digits_grid)
    assert all(r.curves["val/acc"].values and r.curves["train/loss"].values for r in runs)


def test_report_defaults_to_the_given_folder_and_notes_runs_without_csv_logs(digits_grid, tmp_path):  # noqa: F811
    root = tmp_path / "runs"
    with_csv = next(digits_grid.glob("*_ste_*"))
    shutil.copytree(with_csv, root / with_csv.name)
    bare = root / "wandb_only"  # a run that logged to W&B only: metrics.json and config, no csv log
    bare.mkdir()
    for name in ("metrics.json", "config.yaml"):
        shutil.copy(with_csv / name, bare / name)
    proc = subprocess.run(
        [sys.executable, "-m", "bnn_lab.report", str(root)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert "no training curve for 1 run" in proc.stdout and "wandb_only" in proc.stdout
    rows = list(csv.DictReader((root / "runs.csv").open()))
    assert sorted(r["run"] for r in rows) == sorted([with_csv.name, "wandb_only"])
    assert "wandb_only" in (root / "report.md").read_text().split("## Notes")[1]
    _valid_png(root / "accuracy.png")
    _valid_png(root / "curves.png")


def test_report_without_runs_is_a_one_line_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "bnn_lab.report", str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"bnn-lab-report: error: no run under {tmp_path} (a run directory holds metrics.json)"
    ]


def test_console_script_is_declared():
    import importlib
    import tomllib

    scripts = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts.get("bnn-lab-report") == "bnn_lab.report:main"
    module, func = scripts["bnn-lab-report"].split(":")
    assert getattr(importlib.import_module(module), func) is main


def test_the_finished_stages_of_a_run_still_training_are_not_runs(tmp_path):
    """A progressive recipe part-way: its stage folders hold their own metrics.json, but the run is
    not finished; the report counts the finished runs only (it once showed such a stage as an arm)."""
    from bnn_lab.report.collect import find_run_dirs

    done = tmp_path / "0_real2bin_r2b_plain_s1"
    training = tmp_path / "12_real2bin_r2b_progressive_s1"
    for folder in (done, training):
        folder.mkdir()
        (folder / "config.yaml").write_text("seed: 1\n")
    (done / "metrics.json").write_text('{"test/acc": 0.87}')
    for stage in ("0_fp", "1_soft"):
        (training / "stages" / stage).mkdir(parents=True)
        (training / "stages" / stage / "metrics.json").write_text('{"test/acc": 0.90}')
    assert find_run_dirs(tmp_path) == [done]
    (training / "metrics.json").write_text('{"test/acc": 0.86}')  # its last stage ends: one run more
    assert find_run_dirs(tmp_path) == [done, training]

"""``bnn-lab-report DIR [--out OUT]``: collects every run under DIR (a run directory, a
multirun directory, outputs/, a folder of downloaded runs) into

* ``runs.csv`` and ``report.md``: one row per run (estimator, arch, distill, data, seed, test
  accuracy, binary size, epochs, ...) and a summary per configuration over seeds;
* ``accuracy.png``: mean test accuracy of each estimator x architecture (heatmap);
* ``curves.png``: val/acc and train/loss per epoch, from the runs' csv logs
  (``logger=csv``: ``<run>/csv/metrics.csv``). W&B offline files are binary and not read:
  runs without a csv log are listed as such.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..cli.errors import user_errors
from ..errors import UserError
from .collect import collect_runs
from .plots import accuracy_heatmap, training_curves
from .tables import write_csv, write_markdown

PROG = "bnn-lab-report"


@dataclass
class Report:
    runs: int
    files: dict[str, Path]                     # kind (csv, markdown, accuracy, curves) -> path
    notes: list[str] = field(default_factory=list)


def build_report(root: Path, out: Path) -> Report:
    if not root.is_dir():
        raise UserError(f"{root} is not a folder")
    runs = collect_runs(root)
    if not runs:
        raise UserError(f"no run under {root} (a run directory holds metrics.json)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot write the report to {out} ({exc.strerror}); pass --out <a writable folder>") from exc
    rows = [r.row() for r in runs]
    written = {"csv": out / "runs.csv", "markdown": out / "report.md", "accuracy": out / "accuracy.png"}
    write_csv(rows, written["csv"])
    accuracy_heatmap(rows, written["accuracy"])
    notes = []
    if training_curves(runs, out / "curves.png"):
        written["curves"] = out / "curves.png"
    without = [r.name for r in runs if not r.curves.get("val/acc")]
    if without:
        notes.append(f"no training curve for {len(without)} run(s) without a csv log (W&B offline files are "
                     f"binary; train with logger=csv for curves): {', '.join(without)}")
    plots = [p.name for k, p in written.items() if k in ("accuracy", "curves")]
    write_markdown(runs, rows, written["markdown"], plots, notes)
    return Report(len(runs), written, notes)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0].replace("``", "`"),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="a run directory, a multirun directory or any folder of runs")
    parser.add_argument("--out", type=Path, default=None, help="where to write the report (default: ROOT)")
    args = parser.parse_args(argv)
    with user_errors(PROG):
        report = build_report(args.root, args.out or args.root)
    print(f"{PROG}: {report.runs} run{'s' if report.runs != 1 else ''}")
    for kind, path in report.files.items():
        print(f"  {kind:9s} {path}")
    for note in report.notes:
        print(f"note: {note}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()

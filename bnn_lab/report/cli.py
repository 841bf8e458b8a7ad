"""``bnn-lab-report DIR [--out OUT] [--baseline ARM]``: collects every run under DIR (a run
directory, a multirun directory, outputs/, a folder of downloaded runs) into

* ``report.md`` and ``study.csv``: per arm (runs that differ only in ``seed``; one table per
  ``study.name``) n, mean, std and 95% interval of test/acc, the judged network's budget, and
  the paired difference with the baseline arm (``--baseline``, else the study preset's
  ``study.baseline``, else the first arm) with its 95% interval: gain, loss or not
  distinguishable; unequal budgets are refused; teachers are listed with their own cost;
* ``runs.csv`` and the run table in ``report.md``: one row per run;
* ``arms*.png``: each arm's accuracy with its interval; ``steps*.png``: val/acc and train/loss
  by optimizer step, a band (mean +- std over seeds) per arm;
* ``accuracy.png``: mean test accuracy of each estimator x architecture (heatmap);
* ``curves.png``: val/acc and train/loss per epoch of every run.

Curves come from the runs' csv logs (``logger=csv``: ``<run>/csv/metrics.csv``); runs trained
with ``logger=none`` or W&B (binary offline files) have none and are listed as such.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..cli.errors import user_errors
from ..errors import UserError
from .collect import collect_runs
from .plots import accuracy_heatmap, arm_accuracy, step_bands, training_curves
from .study import Study, build_studies
from .tables import write_csv, write_markdown, write_study_csv

PROG = "bnn-lab-report"


@dataclass
class Report:
    runs: int
    files: dict[str, Path]  # kind (csv, markdown, study, accuracy, curves, ...) -> path
    notes: list[str] = field(default_factory=list)
    studies: list = field(default_factory=list)


def _slug(name: str | None) -> str:
    return "" if not name else "-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def build_report(root: Path, out: Path, baseline: str | None = None) -> Report:
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
    studies = build_studies(runs, baseline)
    written = {
        "csv": out / "runs.csv",
        "markdown": out / "report.md",
        "study": out / "study.csv",
        "accuracy": out / "accuracy.png",
    }
    write_csv(rows, written["csv"])
    write_study_csv(studies, written["study"])
    accuracy_heatmap(rows, written["accuracy"])
    notes = [note for s in studies for note in s.notes]
    study_plots = []
    for study in studies:
        slug = _slug(study.name) + ("_tuned" if study.tuned else "")
        arms_png, steps_png = out / f"arms{slug}.png", out / f"steps{slug}.png"
        arm_accuracy(study, arms_png)
        written[arms_png.stem] = arms_png
        plots = [arms_png.name]
        if step_bands(study, steps_png):
            written[steps_png.stem] = steps_png
            plots.append(steps_png.name)
        study_plots.append((study, plots))
    if training_curves(runs, out / "curves.png"):
        written["curves"] = out / "curves.png"
    without = [r.name for r in runs if not r.curves.get("val/acc")]
    if without:
        notes.append(
            f"no training curve for {len(without)} run(s) without a csv log (W&B offline files are "
            f"binary; train with logger=csv for curves): {', '.join(without)}"
        )
    plots = [p.name for k, p in written.items() if k in ("accuracy", "curves")]
    write_markdown(runs, rows, written["markdown"], plots, notes, study_plots)
    return Report(len(runs), written, notes, studies)


def study_summary(study: Study) -> str:
    """The arms and verdicts in a few console lines."""
    tuned = ", each arm tuned first" if study.tuned else ""
    lines = [f"{'study ' + study.name if study.name else 'arms'}{tuned} (baseline {study.baseline.label}):"]
    verdicts = {id(c.arm): c for c in study.comparisons}
    for arm in study.arms:
        est, c = arm.estimate, verdicts.get(id(arm))
        ci = f" [{100 * est.low:.2f}, {100 * est.high:.2f}]" if est.low is not None else ""
        line = f"  {arm.label}: n={est.n} mean {100 * est.mean:.2f}{ci}"
        if c is not None and c.diff is not None:
            d = c.diff
            dci = f" [{100 * d.low:+.2f}, {100 * d.high:+.2f}]" if d.low is not None else ""
            line += f"; vs baseline {100 * d.mean:+.2f} pp{dci}: {c.verdict}"
        elif c is not None:
            line += f"; {c.note}"
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__.split("\n\n")[0].replace("``", "`"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("root", type=Path, help="a run directory, a multirun directory or any folder of runs")
    parser.add_argument("--out", type=Path, default=None, help="where to write the report (default: ROOT)")
    parser.add_argument(
        "--baseline",
        default=None,
        help="the arm the others are compared with (default: the study preset's study.baseline, else the first arm)",
    )
    args = parser.parse_args(argv)
    with user_errors(PROG):
        report = build_report(args.root, args.out or args.root, args.baseline)
    print(f"{PROG}: {report.runs} run{'s' if report.runs != 1 else ''}")
    for study in report.studies:
        print(study_summary(study))
    for kind, path in report.files.items():
        print(f"  {kind:9s} {path}")
    for note in report.notes:
        print(f"note: {note}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()

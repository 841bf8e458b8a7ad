"""The run table (CSV + markdown), its per-configuration summary over seeds, and the study
tables: each arm's accuracy with its interval and budget, and its paired difference with the
baseline."""

from __future__ import annotations

import csv
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from .collect import COLUMNS, Run
from .study import Study, other_training

GROUP_KEYS = ("estimator", "arch", "distill", "data")


def _fmt(value: Any, column: str = "") -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if column in ("test_acc", "test_acc5", "val_acc"):
            return f"{100 * value:.2f}"
        if column == "size_deployed_mb":
            return f"{value:.4f}"
        return f"{value:.1f}" if column in ("wall_time_s", "compression") else f"{value:.4g}"
    if isinstance(value, int) and column == "binary_params":
        return f"{value:,}"
    return str(value)


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in COLUMNS})


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def summary_rows(rows: list[dict[str, Any]], arm_of: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Mean, spread and best test accuracy of each arm x estimator x arch x distill x data, over
    seeds; ``arm_of`` names each run's study arm (runs of one estimator that differ in optimizer,
    scale or loss are different arms and must not share a row)."""
    arm_of = arm_of or {}
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(arm_of.get(row["run"], ""), *(row[k] for k in GROUP_KEYS))].append(row)
    out = []
    for key, members in sorted(groups.items(), key=lambda kv: [str(k) for k in kv[0]]):
        accs = [r["test_acc"] for r in members if r["test_acc"] is not None]
        out.append(
            {
                **dict(zip(("arm", *GROUP_KEYS), key)),
                "runs": len(members),
                "test_acc_mean": statistics.fmean(accs) if accs else None,
                "test_acc_std": statistics.stdev(accs) if len(accs) > 1 else None,
                "test_acc_best": max(accs) if accs else None,
                "size_deployed_mb": members[0]["size_deployed_mb"],
            }
        )
    return out


def write_markdown(
    runs: list[Run],
    rows: list[dict[str, Any]],
    path: Path,
    plots: list[str],
    notes: list[str],
    studies: list[tuple[Study, list[str]]] = (),
) -> None:
    parts = [f"# bnn-lab report: {len(rows)} run{'s' if len(rows) != 1 else ''}", ""]
    untuned = {s.name: s for s, _ in studies if not s.tuned}
    for study, study_plots in studies:
        parts += study_markdown(study, study_plots, untuned.get(study.name) if study.tuned else None)
    arm_of = {
        run.name: f"{study.name or 'runs'}{' (tuned)' if study.tuned else ''}: {arm.label}"
        for study, _ in studies
        for arm in study.arms
        for run in arm.runs
    }
    summary = summary_rows(rows, arm_of)
    if summary:
        parts += ["## Test accuracy (%) per configuration, over seeds", ""]
        header = ["arm", *GROUP_KEYS, "runs", "mean", "std", "best", "size deployed (MB)"]
        parts.append(
            markdown_table(
                header,
                [
                    [_fmt(s[k]) for k in ("arm", *GROUP_KEYS)]
                    + [
                        str(s["runs"]),
                        _fmt(s["test_acc_mean"], "test_acc"),
                        _fmt(s["test_acc_std"], "test_acc"),
                        _fmt(s["test_acc_best"], "test_acc"),
                        _fmt(s["size_deployed_mb"], "size_deployed_mb"),
                    ]
                    for s in summary
                ],
            )
        )
        parts.append("")
    parts += ["## Runs", "", "(accuracies in %; `size_deployed_mb`: 1 bit per binary weight, float32 for the rest)", ""]
    parts.append(markdown_table(COLUMNS, [[_fmt(row[c], c) for c in COLUMNS] for row in rows]))
    parts.append("")
    if plots:
        parts += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    if notes:
        parts += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    path.write_text("\n".join(parts))


def _pct(value: float | None, signed: bool = False) -> str:
    if value is None:
        return ""
    return f"{100 * value:+.2f}" if signed else f"{100 * value:.2f}"


def _interval(low: float | None, high: float | None, signed: bool = False) -> str:
    return "" if low is None else f"[{_pct(low, signed)}, {_pct(high, signed)}]"


def tuning_markdown(study: Study, untuned: Study | None) -> list[str]:
    """A tuned study's settings and cost per arm, and its verdicts beside the untuned study's."""
    parts = [
        "Each arm was tuned before its seeds ran (`study.tune`): the same number of trials of one "
        "search on the validation split, seeds 10000 and up; its runs trained at the best trial's "
        "setting. Tuning steps are not part of the budget compared.",
        "",
        markdown_table(
            ["arm", "chosen setting", "best trial's val acc", "trials", "tuning steps"],
            [
                [
                    arm.label,
                    _setting(arm.tuning) or "(untuned run)",
                    _pct((arm.tuning or {}).get("best_val_acc")),
                    _fmt((arm.tuning or {}).get("trials")),
                    _fmt((arm.tuning or {}).get("steps")),
                ]
                for arm in study.arms
            ],
        ),
        "",
    ]
    if untuned is None:
        return parts
    rows = []
    for c in study.comparisons:
        before = untuned.comparison(c.arm.label) if untuned.baseline.label == study.baseline.label else None
        rows.append(
            [
                c.arm.label,
                _difference(before),
                _difference(c),
                "" if before is None else ("same" if before.verdict == c.verdict else "**changed**"),
            ]
        )
    parts += [
        f"Verdicts against `{study.baseline.label}`, untuned and tuned:",
        "",
        markdown_table(["arm", "untuned (pp, 95% CI, verdict)", "tuned (pp, 95% CI, verdict)", "verdict"], rows),
        "",
    ]
    return parts


def _difference(c) -> str:
    if c is None:
        return "no such arm"
    if c.diff is None:
        return c.note or "-"
    return f"{_pct(c.diff.mean, True)} {_interval(c.diff.low, c.diff.high, True)} {c.verdict}"


def study_rows(study: Study) -> list[dict[str, Any]]:
    """One row per arm: accuracy over seeds, budget, paired difference with the baseline."""
    by_arm = {id(c.arm): c for c in study.comparisons}
    rows = []
    for arm in study.arms:
        est, budget, c = arm.estimate, arm.budget or {}, by_arm.get(id(arm))
        other = [other_training(r) for r in arm.runs]
        rows.append(
            {
                "study": study.name or "",
                "arm": arm.label,
                "baseline": arm is study.baseline,
                "n": est.n,
                "seeds": " ".join(map(str, arm.accs)),
                "mean": est.mean,
                "std": est.std,
                "ci_low": est.low,
                "ci_high": est.high,
                "data": budget.get("data"),
                "batch": budget.get("batch"),
                "steps": budget.get("steps"),
                "epochs": budget.get("epochs"),
                "earlier_stage_steps": max((o["stage_steps"] for o in other), default=0),
                "teacher_steps": max((o["teacher_steps"] for o in other), default=0),
                "pairs": c.diff.n if c and c.diff else None,
                "diff": c.diff.mean if c and c.diff else None,
                "diff_low": c.diff.low if c and c.diff else None,
                "diff_high": c.diff.high if c and c.diff else None,
                "verdict": ("baseline" if arm is study.baseline else c.verdict if c else ""),
                "note": (c.note if c else "") or ("" if arm.budget else "the seeds had different budgets"),
                "tuned": study.tuned,
                "tuned_setting": _setting(arm.tuning),
                "tuning_trials": (arm.tuning or {}).get("trials"),
                "tuning_steps": (arm.tuning or {}).get("steps"),
            }
        )
    return rows


STUDY_COLUMNS = [
    "study",
    "arm",
    "baseline",
    "n",
    "seeds",
    "mean",
    "std",
    "ci_low",
    "ci_high",
    "data",
    "batch",
    "steps",
    "epochs",
    "earlier_stage_steps",
    "teacher_steps",
    "pairs",
    "diff",
    "diff_low",
    "diff_high",
    "verdict",
    "note",
    "tuned",
    "tuned_setting",
    "tuning_trials",
    "tuning_steps",
]


def _setting(tuning: dict[str, Any] | None) -> str:
    """``key=value`` of a tuned arm's chosen setting (4 significant digits), "" where untuned."""
    return " ".join(f"{k}={v:.4g}" for k, v in (tuning or {}).get("params", {}).items())


def write_study_csv(studies: list[Study], path: Path) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=STUDY_COLUMNS)
        writer.writeheader()
        for study in studies:
            for row in study_rows(study):
                writer.writerow({k: ("" if row[k] is None else row[k]) for k in STUDY_COLUMNS})


def study_markdown(study: Study, plots: list[str], untuned: Study | None = None) -> list[str]:
    title = f"Study `{study.name}`" if study.name else "Arms"
    if study.tuned:
        title += ", each arm tuned first"
    rows = study_rows(study)
    parts = [
        f"## {title}: test accuracy (%) over seeds, against `{study.baseline.label}`",
        "",
        "Runs that differ only in `seed` form an arm. 95% interval: Student t over the seeds; the "
        "difference is paired by seed (arm minus baseline, percentage points); budget: the judged "
        "network's data, batch size, optimizer steps and epochs.",
        "",
    ]
    if study.tuned:
        parts += tuning_markdown(study, untuned)
    parts.append(
        markdown_table(
            ["arm", "n", "mean", "std", "95% CI", "data", "batch", "steps", "epochs", "other training (steps)"],
            [
                [
                    f"**{r['arm']}** (baseline)" if r["baseline"] else r["arm"],
                    str(r["n"]),
                    _pct(r["mean"]),
                    _pct(r["std"]),
                    _interval(r["ci_low"], r["ci_high"]),
                    _fmt(r["data"]),
                    _fmt(r["batch"]),
                    _fmt(r["steps"]),
                    _fmt(r["epochs"]),
                    ", ".join(
                        x
                        for x in ([f"earlier stages {r['earlier_stage_steps']}"] if r["earlier_stage_steps"] else [])
                        + ([f"teacher {r['teacher_steps']}"] if r["teacher_steps"] else [])
                    )
                    or "none",
                ]
                for r in rows
            ],
        )
    )
    parts.append("")
    compared = [r for r in rows if not r["baseline"]]
    if compared:
        parts.append(
            markdown_table(
                [f"arm - {study.baseline.label}", "pairs", "difference (pp)", "95% CI (pp)", "verdict"],
                [
                    [
                        r["arm"],
                        _fmt(r["pairs"]),
                        _pct(r["diff"], True),
                        _interval(r["diff_low"], r["diff_high"], True),
                        r["verdict"] or r["note"],
                    ]
                    for r in compared
                ],
            )
        )
        parts.append("")
        extra = [f"- {r['arm']}: {r['note']}" for r in compared if r["note"] and r["verdict"]]
        parts += extra + ([""] if extra else [])
    teachers = study.teachers()
    if teachers:
        parts += ["Teachers (full precision, trained once each and shared; not part of the students' budgets):", ""]
        parts.append(
            markdown_table(
                ["teacher", "steps", "epochs", "test acc", "wall time (s)", "used by runs", "trained by"],
                [
                    [
                        Path(t.get("dir") or t.get("checkpoint") or "").name,
                        _fmt(t.get("global_steps")),
                        _fmt(t.get("epochs")),
                        _pct(t.get("test/acc")),
                        _fmt(t.get("wall_time_s"), "wall_time_s"),
                        str(t["used_by"]),
                        ", ".join(t["trained_by"]) or "an earlier run (cache)",
                    ]
                    for t in teachers
                ],
            )
        )
        parts.append("")
    parts += [f"![{p}]({p})" for p in plots] + ([""] if plots else [])
    return parts

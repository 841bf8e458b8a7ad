"""The run table (CSV + markdown) and its per-configuration summary over seeds."""
from __future__ import annotations

import csv
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from .collect import COLUMNS, Run

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


def summary_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean, spread and best test accuracy of each estimator x arch x distill x data, over seeds."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[tuple(row[k] for k in GROUP_KEYS)].append(row)
    out = []
    for key, members in sorted(groups.items(), key=lambda kv: [str(k) for k in kv[0]]):
        accs = [r["test_acc"] for r in members if r["test_acc"] is not None]
        out.append({
            **dict(zip(GROUP_KEYS, key)),
            "runs": len(members),
            "test_acc_mean": statistics.fmean(accs) if accs else None,
            "test_acc_std": statistics.stdev(accs) if len(accs) > 1 else None,
            "test_acc_best": max(accs) if accs else None,
            "size_deployed_mb": members[0]["size_deployed_mb"],
        })
    return out


def write_markdown(runs: list[Run], rows: list[dict[str, Any]], path: Path, plots: list[str], notes: list[str]) -> None:
    parts = [f"# bnn-lab report: {len(rows)} run{'s' if len(rows) != 1 else ''}", ""]
    summary = summary_rows(rows)
    if summary:
        parts += ["## Test accuracy (%) per configuration, over seeds", ""]
        header = [*GROUP_KEYS, "runs", "mean", "std", "best", "size deployed (MB)"]
        parts.append(markdown_table(header, [
            [_fmt(s[k]) for k in GROUP_KEYS] + [str(s["runs"]), _fmt(s["test_acc_mean"], "test_acc"),
                                                _fmt(s["test_acc_std"], "test_acc"), _fmt(s["test_acc_best"], "test_acc"),
                                                _fmt(s["size_deployed_mb"], "size_deployed_mb")]
            for s in summary
        ]))
        parts.append("")
    parts += ["## Runs", "", "(accuracies in %; `size_deployed_mb`: 1 bit per binary weight, float32 for the rest)", ""]
    parts.append(markdown_table(COLUMNS, [[_fmt(row[c], c) for c in COLUMNS] for row in rows]))
    parts.append("")
    if plots:
        parts += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    if notes:
        parts += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    path.write_text("\n".join(parts))

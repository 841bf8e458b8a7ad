"""PNG plots (matplotlib, Agg backend): accuracy per estimator x architecture, training curves
per epoch; for a study, each arm's accuracy with its interval and its curves by optimizer step
as bands over seeds."""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display (clusters, CI)
import matplotlib.pyplot as plt  # noqa: E402

from .collect import Run, StepCurve  # noqa: E402
from .study import Study  # noqa: E402


def accuracy_heatmap(rows: list[dict[str, Any]], path: Path) -> None:
    """Mean test accuracy (over seeds, and over the other settings) of each estimator x arch."""
    cells: dict[tuple[str, str], list[float]] = defaultdict(list)
    for row in rows:
        if row["test_acc"] is not None:
            cells[(str(row["estimator"]), str(row["arch"]))].append(row["test_acc"])
    estimators = sorted({e for e, _ in cells})
    archs = sorted({a for _, a in cells})
    grid = [
        [statistics.fmean(cells[(e, a)]) * 100 if cells.get((e, a)) else float("nan") for a in archs]
        for e in estimators
    ]
    fig, ax = plt.subplots(figsize=(1.6 * len(archs) + 2.5, 0.55 * len(estimators) + 1.8), dpi=100)
    image = ax.imshow(grid, cmap="viridis", aspect="auto", vmin=0, vmax=100)
    ax.set_xticks(range(len(archs)), labels=archs, rotation=20, ha="right")
    ax.set_yticks(range(len(estimators)), labels=estimators)
    ax.set_xlabel("architecture")
    ax.set_ylabel("estimator")
    for i, e in enumerate(estimators):
        for j, a in enumerate(archs):
            values = cells.get((e, a))
            if values:
                label = f"{grid[i][j]:.1f}" + (f"\n(n={len(values)})" if len(values) > 1 else "")
                ax.text(
                    j, i, label, ha="center", va="center", color="white" if grid[i][j] < 60 else "black", fontsize=8
                )
    fig.colorbar(image, ax=ax, label="test accuracy (%)")
    ax.set_title("test accuracy (%), mean over runs")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def training_curves(runs: list[Run], path: Path) -> bool:
    """val/acc and train/loss (or val/loss) per epoch of every run with a csv log; False when
    no run has one."""
    with_curves = [r for r in runs if r.curves.get("val/acc")]
    if not with_curves:
        return False
    loss_key = "train/loss" if any(r.curves.get("train/loss") for r in with_curves) else "val/loss"
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=100)
    for run in with_curves:
        label = run.name if len(run.name) <= 40 else "..." + run.name[-37:]
        acc = run.curves["val/acc"]
        ax_acc.plot(acc.epochs, [100 * v for v in acc.values], marker="o", markersize=3, label=label)
        loss = run.curves.get(loss_key)
        if loss:
            ax_loss.plot(loss.epochs, loss.values, marker="o", markersize=3, label=label)
    ax_acc.set(xlabel="epoch", ylabel="val accuracy (%)", title="val/acc")
    ax_loss.set(xlabel="epoch", ylabel=loss_key, title=loss_key)
    for ax in (ax_acc, ax_loss):
        ax.grid(alpha=0.3)
    if len(with_curves) <= 12:
        ax_acc.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def arm_accuracy(study: Study, path: Path) -> None:
    """Each arm's mean test accuracy with its 95% interval (error bar) and every seed (dots)."""
    arms = study.arms
    fig, ax = plt.subplots(figsize=(max(4.5, 1.1 * len(arms) + 2), 4.2), dpi=100)
    for i, arm in enumerate(arms):
        est = arm.estimate
        err = [[100 * (est.mean - est.low)], [100 * (est.high - est.mean)]] if est.low is not None else None
        color = "black" if arm is study.baseline else f"C{i % 10}"
        ax.errorbar([i], [100 * est.mean], yerr=err, fmt="o", color=color, capsize=6, markersize=7)
        ax.scatter([i + 0.12] * len(arm.accs), [100 * v for v in arm.accs.values()], s=12, color=color, alpha=0.5)
    ax.set_xticks(range(len(arms)), labels=[_short(a.label) for a in arms], rotation=20, ha="right")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{study.name or 'arms'}: mean and 95% interval over seeds (dots: seeds)")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _short(label: str, width: int = 28) -> str:
    return label if len(label) <= width else label[: width - 3] + "..."


def _band(curves: list[StepCurve]) -> tuple[list[int], list[float], list[float]]:
    """Mean and std over seeds at the steps every seed logged."""
    shared = sorted(set.intersection(*(set(c.steps) for c in curves)))
    at = [dict(zip(c.steps, c.values)) for c in curves]
    means = [statistics.fmean(a[s] for a in at) for s in shared]
    stds = [statistics.pstdev([a[s] for a in at]) if len(at) > 1 else 0.0 for s in shared]
    return shared, means, stds


def step_bands(study: Study, path: Path) -> bool:
    """val/acc and train/loss by optimizer step of the judged network, one band (mean +- std
    over seeds) per arm; False when no run of the study has a csv log."""
    metrics = [("val/acc", 100.0, "val accuracy (%)"), ("train/loss", 1.0, "train/loss (logged steps)")]
    drawn = False
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), dpi=100)
    for ax, (key, scale, ylabel) in zip(axes, metrics):
        for i, arm in enumerate(study.arms):
            curves = [r.step_curves[key] for r in arm.runs if r.step_curves.get(key) and r.step_curves[key].steps]
            if not curves:
                continue
            steps, means, stds = _band(curves)
            if not steps:
                continue
            drawn = True
            color = "black" if arm is study.baseline else f"C{i % 10}"
            label = f"{_short(arm.label)} (n={len(curves)})"
            lo = [scale * (m - s) for m, s in zip(means, stds)]
            hi = [scale * (m + s) for m, s in zip(means, stds)]
            if len(steps) == 1:
                ax.errorbar(
                    steps,
                    [scale * means[0]],
                    yerr=[[scale * stds[0]], [scale * stds[0]]],
                    fmt="o",
                    color=color,
                    capsize=5,
                    label=label,
                )
            else:
                ax.plot(steps, [scale * m for m in means], color=color, label=label)
                ax.fill_between(steps, lo, hi, color=color, alpha=0.2)
        ax.set(xlabel="optimizer step", ylabel=ylabel, title=f"{key}, mean +- std over seeds")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    if drawn:
        fig.tight_layout()
        fig.savefig(path)
    plt.close(fig)
    return drawn

"""PNG plots (matplotlib, Agg backend): accuracy per estimator x architecture, training curves."""
from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display (clusters, CI)
import matplotlib.pyplot as plt  # noqa: E402

from .collect import Run  # noqa: E402


def accuracy_heatmap(rows: list[dict[str, Any]], path: Path) -> None:
    """Mean test accuracy (over seeds, and over the other settings) of each estimator x arch."""
    cells: dict[tuple[str, str], list[float]] = defaultdict(list)
    for row in rows:
        if row["test_acc"] is not None:
            cells[(str(row["estimator"]), str(row["arch"]))].append(row["test_acc"])
    estimators = sorted({e for e, _ in cells})
    archs = sorted({a for _, a in cells})
    grid = [[statistics.fmean(cells[(e, a)]) * 100 if cells.get((e, a)) else float("nan") for a in archs]
            for e in estimators]
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
                ax.text(j, i, label, ha="center", va="center", color="white" if grid[i][j] < 60 else "black",
                        fontsize=8)
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

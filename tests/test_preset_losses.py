"""Every preset trains as before the objective became loss terms only: experiment=real2bin (four
stages, KD + attention) and a KD run with its teacher trained in the run, a few digits steps, give
the per-stage losses that the code before that change logged (tests/data/, recorded with the
same commands)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

RECORDED = json.loads((Path(__file__).parent / "data" / "preset_losses_before_loss_terms.json").read_text())
COMMON = (
    "data=digits",
    "logger=csv",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "export.packed=false",
    "seed=5",
)
COMMANDS = {
    "r2b": ("experiment=real2bin",),
    "kd": ("distill=kd", "distill.teacher.cache=false", "distill.teacher.epochs=1", "trainer.max_epochs=2"),
}


def _logged(run_dir: Path, columns) -> dict[str, dict[str, list[float]]]:
    out = {}
    for f in sorted(run_dir.glob("stages/*/csv/metrics.csv")):
        rows = list(csv.DictReader(f.open()))
        out[f.parent.parent.name] = {c: [float(r[c]) for r in rows if r.get(c)] for c in columns}
    return out


@pytest.mark.parametrize("run", sorted(COMMANDS))
def test_a_preset_logs_the_losses_it_logged_before(run_cli, tmp_path, run):
    proc = run_cli(*COMMANDS[run], *COMMON, run_dir=tmp_path / run, env={"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    before = RECORDED["runs"][run]
    now = _logged(tmp_path / run, {c for stage in before.values() for c in stage})
    assert sorted(now) == sorted(before)
    for stage, columns in before.items():
        for column, values in columns.items():
            assert now[stage][column] == pytest.approx(values, rel=1e-4, abs=1e-6), (stage, column)

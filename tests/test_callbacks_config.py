"""``callbacks=[...]``: registered Lightning callbacks join a run beside those every run has
(a plugin's own here), and a misspelt name is one line listing the valid ones."""

import json
import os
from pathlib import Path

from bnn_lab.training.callbacks import CALLBACKS

PLUGIN_PATH = {"PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))}


def test_a_plugins_callback_sees_every_training_step(run_cli):
    proc = run_cli(
        "data=digits",
        "trainer.max_epochs=1",
        "logger=none",
        "export.packed=false",
        "plugins=[step_counter_callback]",
        "callbacks=[step_counter]",
        env=PLUGIN_PATH,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((proc.run_dir / "metrics.json").read_text())
    assert int((proc.run_dir / "steps_seen.txt").read_text()) == metrics["global_steps"] == 41  # 1294 images / 32


def test_an_unknown_callback_lists_the_valid_ones(run_cli):
    proc = run_cli("data=digits", "trainer.max_epochs=1", "logger=none", "callbacks=[stepcounter]")
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert "stepcounter" in last and all(name in last for name in CALLBACKS.names()), last
    assert "Traceback" not in proc.stderr

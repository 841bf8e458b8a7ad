"""``experiment=adambnn`` (AdamBNN's two steps): the composed preset's stages have the
intended precision and weight decay, and it trains on digits through the ``bnn-lab`` code path."""

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from bnn_lab.assembly import build_model
from bnn_lab.optim import build_optimizer
from bnn_lab.training.stages import plan_stages

CONF = Path(__file__).resolve().parents[1] / "conf"


def test_two_steps_binary_activations_then_1w1a_without_decay_on_latent_weights():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["data=digits", "experiment=adambnn"])
    assert cfg.optimizer.name == "adam" and cfg.optimizer.lr == 0.001
    stages = plan_stages(cfg)
    assert [(s.name, s.precision, s.init, s.teacher) for s in stages] == [
        ("binary_act", "binary_act", None, None),
        ("1w1a", "1w1a", "previous", None),
    ]
    decay = {}
    for stage in stages:
        model, _ = build_model(cfg, 1, 10, 8, precision=stage.precision)
        conv = model.layer2[0].conv1
        assert conv.binary_inputs  # binary activations in both steps
        assert conv.binary_weights == (stage.precision == "1w1a")
        groups = build_optimizer(model, cfg.optimizer).param_groups
        decay[stage.name] = next(g["weight_decay"] for g in groups if any(p is conv.weight for p in g["params"]))
        assert next(g["weight_decay"] for g in groups if any(p is model.bn1.weight for p in g["params"])) == 5e-6
    assert decay == {"binary_act": 5e-6, "1w1a": 0.0}


@pytest.mark.slow
def test_adambnn_on_digits(run_cli, tmp_path):
    """Both steps run (one epoch each, constant lr 0.02); the 1W1A step starts from the first
    step's weights and ends far above chance (0.1)."""
    proc = run_cli(
        "data=digits",
        "experiment=adambnn",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
        "logger=none",
        "export.packed=false",
        "scheduler=none",
        "optimizer.lr=0.02",
        run_dir=tmp_path / "run",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    first = json.loads((tmp_path / "run/stages/0_binary_act/metrics.json").read_text())
    second = json.loads((tmp_path / "run/stages/1_1w1a/metrics.json").read_text())
    assert "stage 1w1a starts from the stage 0's weights" in proc.stdout + proc.stderr
    assert first["test/acc"] > 0.4 and second["test/acc"] > 0.4, (first["test/acc"], second["test/acc"])

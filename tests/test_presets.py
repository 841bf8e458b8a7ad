"""Every experiment preset composes, and the ones for data that is not on this machine
start on synthetic data of the right shape (a few batches: mechanics only)."""

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

CONF = Path(__file__).resolve().parents[1] / "conf"
PRESETS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
SHAPES = {"cifar10": (3, 32, 10), "imagenet": (3, 224, 1000), "fashion_mnist": (1, 28, 10), "digits": (1, 8, 10)}


@pytest.mark.parametrize("name", PRESETS)
def test_preset_composes(name):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"experiment={name}"])
    assert cfg.data.name in SHAPES and cfg.arch.name


def test_published_settings_are_in_the_presets():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        fda = compose(config_name="config", overrides=["experiment=cifar10_resnet20_fda"])
        r2b = compose(config_name="config", overrides=["experiment=imagenet_resnet18_real2bin"])
        fp = compose(config_name="config", overrides=["experiment=fmnist_fp"])
    assert (fda.arch.name, fda.estimator.name, fda.data.name) == ("resnet20", "fda", "cifar10")
    assert [s.lr for s in r2b.stages] == [0.001, 0.001, 0.001, 0.0002]
    assert r2b.stages[3].terms.kd.weight == 0.8 and r2b.stages[1].terms.attention == 30.0
    assert "attention" not in r2b.stages[3].terms  # the published stage 4: attention 0, KD 0.8
    assert r2b.binarize.scale == "gating" and r2b.data.name == "imagenet"
    assert fp.precision == "fp" and fp.arch.name == "vgg_small" and fp.trainer.max_epochs == 40


@pytest.mark.parametrize("name", ["cifar10_resnet20_fda", "cifar10_densenet28", "imagenet_resnet18_real2bin"])
def test_preset_starts_on_synthetic_data_with_its_shapes(run_cli, name):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"experiment={name}"])
    chans, size, classes = SHAPES[cfg.data.name]
    args = [
        f"experiment={name}",
        "data=synthetic",
        f"data.in_chans={chans}",
        f"data.img_size={size}",
        f"data.num_classes={classes}",
        "data.n_train=8",
        "data.n_test=4",
        "data.batch_size=4",
        "data.val_size=4",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=1",
        "logger=none",
        "trainer.enable_progress_bar=false",
    ]
    if cfg.get("stages"):
        args += [f"stages.{i}.epochs=1" for i in range(len(cfg.stages))]
    proc = run_cli(*args, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((proc.run_dir / "metrics.json").read_text())
    assert metrics["arch"] == cfg.arch.name
    if cfg.get("stages"):
        assert [s["name"] for s in metrics["stages"]] == [s.name for s in cfg.stages]
    summary = (proc.run_dir / ("stages/3_1w1a/summary.txt" if cfg.get("stages") else "summary.txt")).read_text()
    assert "BinaryConv2d" in summary

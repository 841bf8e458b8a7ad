"""Resuming, the parts around the checkpoint: ``resume=<run dir>`` on the command line, the
checks of the run directory and of last.ckpt, and the W&B run id kept across the restart."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from bnn_lab.cli.resume import expand_resume
from bnn_lab.errors import ConfigError, UserError
from bnn_lab.training.loggers import WANDB_ID_FILE, build_logger, wandb_run_id
from bnn_lab.training.safety.resume import checkpoint_to_resume
from bnn_lab.training.safety.run_dir import check_run_dir


def run_dir_with_overrides(tmp_path: Path, overrides: list[str]) -> Path:
    run = tmp_path / "outputs" / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    return run


# -- resume=<run dir> ------------------------------------------------------------------------
def test_resume_dir_repeats_the_runs_overrides_and_pins_its_directory(tmp_path):
    run = run_dir_with_overrides(
        tmp_path, ["data=digits", "+arch.kwargs.drop_rate=0.2", "trainer.max_epochs=3", "resume=true"]
    )
    args = expand_resume([f"resume={run}", "trainer.max_epochs=5"])
    assert args == [
        "data=digits",
        "+arch.kwargs.drop_rate=0.2",
        "trainer.max_epochs=5",
        "resume=true",
        f"hydra.run.dir={run}",
    ]
    assert expand_resume([f"resume={run}", f"hydra.run.dir={run}"])[-1] == f"hydra.run.dir={run}"


def test_resume_true_and_no_resume_are_left_alone():
    assert expand_resume(["resume=true", "hydra.run.dir=x"]) == ["resume=true", "hydra.run.dir=x"]
    assert expand_resume(["resume=false"]) == ["resume=false"]
    assert expand_resume(["data=digits"]) == ["data=digits"]


def test_resume_dir_mistakes_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not a bnn-lab run directory"):
        expand_resume([f"resume={tmp_path}"])
    run = run_dir_with_overrides(tmp_path, ["data=digits"])
    with pytest.raises(ConfigError, match="continues one run"):
        expand_resume(["-m", f"resume={run}"])
    with pytest.raises(ConfigError, match="name two run directories"):
        expand_resume([f"resume={run}", f"hydra.run.dir={tmp_path / 'other'}"])


# -- the run directory -----------------------------------------------------------------------
def cfg(**values):
    c = OmegaConf.create(
        {
            "seed": 42,
            "resume": False,
            "arch": {"name": "resnet20"},
            "data": {"name": "digits", "batch_size": 32},
            "trainer": {"max_epochs": 3},
        }
    )
    for key, value in values.items():
        OmegaConf.update(c, key, value)
    return c


def finished_run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    (run / "config.yaml").write_text(OmegaConf.to_yaml(cfg()))
    return run


def test_a_new_run_never_goes_into_the_directory_of_another(tmp_path):
    run = finished_run(tmp_path)
    with pytest.raises(ConfigError, match=f"already holds a run.*resume with: bnn-lab resume={run}"):
        check_run_dir(run, cfg())
    check_run_dir(tmp_path / "fresh", cfg())  # an empty or new folder is fine


def test_resume_refuses_another_network_and_warns_about_other_changes(tmp_path, caplog):
    run = finished_run(tmp_path)
    with pytest.raises(ConfigError, match=r"another network or data .*arch.name: 'resnet20' -> 'vgg_small'"):
        check_run_dir(run, cfg(resume=True, **{"arch.name": "vgg_small"}))
    with pytest.raises(ConfigError, match="data.batch_size: 32 -> 64"):
        check_run_dir(run, cfg(resume=True, **{"data.batch_size": 64}))
    with caplog.at_level(logging.WARNING):
        check_run_dir(run, cfg(resume=True, **{"trainer.max_epochs": 5}))
    assert "resuming with a changed value: trainer.max_epochs: 3 -> 5" in caplog.text


# -- last.ckpt -------------------------------------------------------------------------------
def test_last_checkpoint_is_checked_before_lightning_loads_it(tmp_path):
    ckpt_dir = tmp_path / "checkpoints"
    ckpt_dir.mkdir()
    net = nn.Linear(3, 2)
    assert checkpoint_to_resume(ckpt_dir, net, tmp_path) is None  # nothing saved yet: from the start
    (ckpt_dir / ".last.ckpt.123.partial").write_bytes(b"half")  # left by a killed write
    torch.save({"state_dict": net.state_dict(), "loops": {}}, ckpt_dir / "last.ckpt")
    assert checkpoint_to_resume(ckpt_dir, net, tmp_path) == str(ckpt_dir / "last.ckpt")
    assert not list(ckpt_dir.glob("*.partial"))
    with pytest.raises(ConfigError, match="does not fit this configuration .*reshaped"):
        checkpoint_to_resume(ckpt_dir, nn.Linear(4, 2), tmp_path)
    data = (ckpt_dir / "last.ckpt").read_bytes()
    (ckpt_dir / "last.ckpt").write_bytes(data[: len(data) // 2])  # written before writes were atomic
    with pytest.raises(UserError, match="cannot be read"):
        checkpoint_to_resume(ckpt_dir, net, tmp_path)


# -- W&B -------------------------------------------------------------------------------------
def test_the_wandb_run_id_is_kept_in_the_run_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_RUN_ID", raising=False)
    first = wandb_run_id(tmp_path, resuming=False)
    assert (tmp_path / WANDB_ID_FILE).read_text().strip() == first and len(first) == 8
    assert wandb_run_id(tmp_path, resuming=True) == first
    assert wandb_run_id(tmp_path, resuming=False) != first  # a new run starts a new W&B run


def test_a_resumed_run_asks_wandb_to_continue_the_same_run(tmp_path):
    run_id = wandb_run_id(tmp_path, resuming=False)
    logger = build_logger({"name": "wandb", "mode": "offline"}, tmp_path, "name", resuming=True)
    assert logger._wandb_init["id"] == run_id and logger._wandb_init["resume"] == "allow"


def test_a_wandb_sweep_agent_keeps_its_run_id(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_RUN_ID", "agentrun1")  # what `wandb agent` sets for the run it starts
    assert wandb_run_id(tmp_path, resuming=False) == "agentrun1"
    assert (tmp_path / WANDB_ID_FILE).read_text().strip() == "agentrun1"


def test_a_run_from_before_the_precision_key_resumes(tmp_path):
    """An old run spelt its precision fp=false (no precision key): the same network now."""
    from omegaconf import OmegaConf

    from bnn_lab.training.safety.run_dir import config_changes

    saved = tmp_path / "config.yaml"
    saved.write_text("arch: {name: resnet20}\nfp: false\nseed: 1\n")
    assert (
        config_changes(
            saved, OmegaConf.create({"arch": {"name": "resnet20"}, "precision": "1w1a", "fp": False, "seed": 1})
        )
        == []
    )
    fp_run = OmegaConf.create({"arch": {"name": "resnet20"}, "precision": "fp", "seed": 1})
    assert config_changes(saved, fp_run) == ["precision: '1w1a' -> 'fp'"]

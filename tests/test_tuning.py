"""``study.tune=N``: each arm gets N trials of the same search at the same budget, on the
validation split only (the test split is refused to a trial), and then trains at its best
trial's setting; a study run again reuses the trials."""

import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
from hydra import compose, initialize_config_dir

from bnn_lab.assembly import build_data
from bnn_lab.errors import ConfigError
from bnn_lab.training.tuning import TUNE_SEED, SplitRefused, refuse_test_split, search_space

ARMS = ("ste", "approx")
CONF = str(Path(__file__).resolve().parents[1] / "conf")
FAST = ["data=digits", "trainer.max_epochs=1", "logger=csv", "trainer.enable_progress_bar=false"]


def _composed(*overrides: str):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def test_a_trial_cannot_read_the_test_split():
    dm = build_data({"data": {"name": "digits"}})
    dm.setup("test")
    assert len(dm.test_dataloader().dataset) == 359  # readable before
    refuse_test_split(dm)
    with pytest.raises(SplitRefused, match="validation split only"):
        dm.test_dataloader()


def test_every_arm_gets_the_same_trials_and_trains_at_its_best_one(run_cli, tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", f"estimator={','.join(ARMS)}", "seed=1", "study.tune=3", *FAST, f"hydra.sweep.dir={sweep}"]
    proc = run_cli(*args, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = {json.loads(p.read_text())["estimator"]: p.parent for p in sweep.glob("*/metrics.json")}
    assert set(runs) == set(ARMS)
    steps = set()
    for name, run in runs.items():
        metrics = json.loads((run / "metrics.json").read_text())
        tuning = metrics["tuning"]
        record = json.loads((sweep / "tuning" / tuning["arm"] / "trials.json").read_text())
        trials = record["trials"]
        assert len(trials) == tuning["trials"] == 3
        assert [t["seed"] for t in trials] == [TUNE_SEED, TUNE_SEED + 1, TUNE_SEED + 2]
        lo, hi = record["space"]["optimizer.lr"][:2]
        default = _composed(*FAST, f"estimator={name}").optimizer.lr
        assert lo == pytest.approx(default / 10) and hi == pytest.approx(default * 10)  # the same rule for both
        assert all(lo <= t["params"]["optimizer.lr"] <= hi for t in trials)
        best = max(trials, key=lambda t: t["val/acc"])
        assert tuning["params"] == best["params"] and tuning["best_val_acc"] == best["val/acc"]
        # the run itself trained at that setting, with its own seed, and was tested once
        config = (run / "config.yaml").read_text()
        assert f"lr: {best['params']['optimizer.lr']}" in config and "seed: 1" in config
        assert "test/acc" in metrics
        for k in range(3):
            trial = json.loads((sweep / "tuning" / tuning["arm"] / f"trial_{k}" / "metrics.json").read_text())
            assert "val/acc" in trial and not any(key.startswith(("test/", "packed/")) for key in trial)
        steps.add(tuning["steps"])
        steps.update(t["global_steps"] for t in trials)
    assert steps == {41, 3 * 41}  # every trial of every arm: one digits epoch
    # the report reads the tested runs, not the trials, and shows each arm's chosen setting
    from bnn_lab.report.cli import main as report

    report([str(sweep), "--out", str(tmp_path / "report")])
    markdown = (tmp_path / "report" / "report.md").read_text()
    for name, run in runs.items():
        chosen = json.loads((run / "metrics.json").read_text())["tuning"]["params"]["optimizer.lr"]
        assert f"optimizer.lr={chosen:.4g}" in markdown, name
    assert "trial_0" not in markdown
    # run again: the trials are reused, nothing is trained anew
    again = run_cli(*args, "resume=true", timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    said = again.stdout + again.stderr
    assert "trial 1 of 3" not in said and said.count("already finished") == len(ARMS), said[-3000:]
    assert "Warning" not in again.stderr, again.stderr[-2000:]


def test_the_search_space_is_the_arms_lr_and_its_declared_knobs():
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(
        {
            "loss": {"lcr": {"weight": 1e-6}},
            "optimizer": {"lr": 0.01},
            "study": {"tune_lr_factor": 4, "tune_space": {"loss.lcr.weight": {"low": 1e-7, "high": 1e-5, "log": True}}},
        }
    )
    assert search_space(cfg) == {
        "optimizer.lr": (0.0025, 0.04, True),
        "loss.lcr.weight": (1e-7, 1e-5, True),
    }


class Killed(RuntimeError):
    pass


class KillAtStep20(pl.Callback):
    """Stands for a kill: raises after step 20's checkpoint (written by the run's own callbacks first)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == 20:
            raise Killed("killed at step 20")


def test_a_tuning_cut_inside_a_trial_continues_that_trial_with_its_setting(tmp_path):
    """A kill inside trial 1 (after its setting was drawn and a checkpoint written): run again,
    trial 0 is kept, trial 1 continues from its checkpoint with the setting it had, trial 2 is drawn."""
    from bnn_lab.training import run as run_module
    from bnn_lab.training import tuning
    from bnn_lab.training.callbacks import CALLBACKS

    if "kill_at_step_20" not in CALLBACKS:
        CALLBACKS.register("kill_at_step_20")(KillAtStep20)
    cfg = _composed(*FAST, "logger=none", "study.tune=3", "seed=1", "checkpoint.every_n_train_steps=10")
    calls = []

    def train(trial_cfg, trial_dir, test=True):
        calls.append((trial_dir.name, bool(trial_cfg.resume), float(trial_cfg.optimizer.lr)))
        if trial_dir.name == "trial_1" and not trial_cfg.resume:
            trial_cfg.callbacks = ["kill_at_step_20"]
        return run_module.train(trial_cfg, trial_dir, test=test)

    run_dir = tmp_path / "sweep" / "0_run"
    with pytest.raises(Killed):
        tuning.tune_arm(cfg, run_dir, train)
    assert [c[0] for c in calls] == ["trial_0", "trial_1"]
    tuned, summary = tuning.tune_arm(cfg, run_dir, train)
    assert [c[:2] for c in calls[2:]] == [("trial_1", True), ("trial_2", False)]
    assert calls[2][2] == calls[1][2]  # trial 1 went on with the learning rate it had drawn
    assert summary["trials"] == 3 and tuned.optimizer.lr == summary["params"]["optimizer.lr"]
    # the settings are those of an unbroken tuning (a fresh sampler would draw trial 0's again)
    unbroken = []

    def record(trial_cfg, trial_dir, test=True):
        unbroken.append(trial_cfg)
        return run_module.train(trial_cfg, trial_dir, test=test)

    tuning.tune_arm(cfg, tmp_path / "unbroken" / "0_run", record)
    assert [float(c.optimizer.lr) for c in unbroken] == [calls[0][2], calls[1][2], calls[3][2]]
    assert len({float(c.optimizer.lr) for c in unbroken}) == 3


def test_the_arms_that_declare_knobs_name_keys_their_configuration_has():
    spaces = {}
    for arm in ("methods_rbonn", "methods_bop", "methods_lcr", "methods_adambnn"):
        spaces[arm] = search_space(_composed("experiment=study_methods", f"arm={arm}"))
    assert set(spaces["methods_rbonn"]) == {"optimizer.lr", "binarize.scale.lam"}
    assert set(spaces["methods_bop"]) == {"optimizer.lr", "optimizer.latent.gamma", "optimizer.latent.threshold"}
    assert set(spaces["methods_lcr"]) == {"optimizer.lr", "loss.lcr.weight"}
    assert set(spaces["methods_adambnn"]) == {"optimizer.lr"}  # its default lr is the knob the docs trace
    with pytest.raises(ConfigError, match="no key loss.lcr.wieght"):
        search_space(_composed("+study.tune_space={loss.lcr.wieght: {low: 1, high: 2}}"))


def test_recorded_trials_outside_todays_search_space_are_refused_in_one_line(tmp_path):
    """A tuning folder whose trial lies outside the space (study.tune_space or tune_lr_factor changed
    since, which do not rename the arm) is refused with what to do, not with the sampler's error."""
    from bnn_lab.errors import UserError
    from bnn_lab.training import tuning

    cfg = _composed(*FAST, "logger=none", "study.tune=1", "seed=1")
    run_dir = tmp_path / "sweep" / "0_run"
    folder = run_dir.parent / "tuning" / tuning.arm_key(cfg)
    folder.mkdir(parents=True)
    trial = {"trial": 0, "params": {"optimizer.lr": 10.0}, "val/acc": 0.5, "seed": TUNE_SEED, "global_steps": 41}
    (folder / "trials.json").write_text(json.dumps({"arm": folder.name, "space": {}, "trials": [trial]}))
    with pytest.raises(UserError, match="outside the search space.*remove its tuning folder"):
        tuning.tune_arm(cfg, run_dir, lambda *a, **k: pytest.fail("nothing should train"))


def test_a_tuned_distillation_arm_learns_from_the_teacher_its_seed_shares():
    """Tuning LCR's learning rate must not retrain its teacher at that rate: the tuned arm's cached
    teacher is the untuned arm's and the KD arm's (one per seed), and its own optimizer is tuned."""
    from omegaconf import OmegaConf

    from bnn_lab.training.teacher_cache import teacher_config, teacher_key
    from bnn_lab.training.tuning import with_params

    lcr = _composed("experiment=study_methods", "arm=methods_lcr")
    kd = _composed("experiment=study_methods", "arm=methods_kd")
    setting = {"optimizer.lr": 0.0423, "loss.lcr.weight": 5.85e-7}
    tuned = with_params(lcr, setting)
    assert tuned.optimizer.lr == 0.0423 and tuned.loss.lcr.weight == 5.85e-7
    assert OmegaConf.to_container(tuned.distill.teacher.overrides) == {"optimizer.lr": lcr.optimizer.lr}
    shared = teacher_key(teacher_config(kd))
    assert teacher_key(teacher_config(lcr)) == shared == teacher_key(teacher_config(tuned))
    assert teacher_config(tuned).optimizer.lr == lcr.optimizer.lr
    unpinned = OmegaConf.create(OmegaConf.to_container(lcr, resolve=True))
    OmegaConf.update(unpinned, "optimizer.lr", 0.0423, merge=False)
    assert teacher_key(teacher_config(unpinned)) != shared  # what the tuned arm trained against before
    plain = with_params(_composed("experiment=study_methods", "arm=methods_plain"), {"optimizer.lr": 0.0423})
    assert "teacher" not in plain.distill  # no teacher, nothing pinned


def test_teacher_overrides_change_the_teachers_run_and_refuse_the_students_keys():
    from omegaconf import OmegaConf

    from bnn_lab.training.teacher_cache import teacher_config

    cfg = _composed("experiment=study_methods", "arm=methods_kd")
    OmegaConf.set_struct(cfg, False)
    OmegaConf.update(cfg, "distill.teacher.overrides", {"optimizer.lr": 0.5, "trainer.max_epochs": 7}, merge=False)
    teacher = teacher_config(cfg)
    assert teacher.optimizer.lr == 0.5 and teacher.trainer.max_epochs == 7 and cfg.optimizer.lr != 0.5
    for key in ("loss.kd.weight", "estimator.name", "optimizer.lrr"):
        OmegaConf.update(cfg, "distill.teacher.overrides", {key: 1.0}, merge=False)
        with pytest.raises(ConfigError, match=f"distill.teacher.overrides.{key}: not a value of the teacher"):
            teacher_config(cfg)

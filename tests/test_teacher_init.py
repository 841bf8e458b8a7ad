"""A student taught by a teacher from a checkpoint can start from the teacher's weights
(``distill.init_from_teacher=true``), and the Fashion-MNIST distillation preset is
``fmnist_bnn`` plus the teacher and nothing else."""

from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from bnn_lab.training import run as run_module

CONF = str(Path(__file__).resolve().parents[1] / "conf")
SHORT = [
    "data=digits",
    "logger=none",
    "trainer.enable_progress_bar=false",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "export.packed=false",
]


def _cfg(*overrides):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="config", overrides=[*SHORT, *overrides])


def test_student_starts_from_a_checkpoint_teachers_weights(tmp_path, monkeypatch):
    run_module.train(_cfg("precision=fp"), tmp_path / "teacher")
    ckpt = next((tmp_path / "teacher" / "checkpoints").glob("best*.ckpt"))
    teacher_state = {k.removeprefix("model."): v for k, v in torch.load(ckpt, weights_only=False)["state_dict"].items()}

    seen = []
    real_init = run_module.init_from

    def spy(model, state):
        seen.append({k: v.clone() for k, v in state.items()})
        return real_init(model, state)

    monkeypatch.setattr(run_module, "init_from", spy)
    for init in ("true", "false"):
        run_module.train(
            _cfg("distill=kd", f"distill.teacher.ckpt='{ckpt}'", f"distill.init_from_teacher={init}"),
            tmp_path / f"student_{init}",
        )
    assert len(seen) == 1  # only the run that asked for it
    shared = [k for k in seen[0] if k in teacher_state]
    assert len(shared) > 10 and all(torch.equal(seen[0][k], teacher_state[k]) for k in shared)


def test_fmnist_kd_preset_is_fmnist_bnn_with_a_teacher():
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        plain = compose(config_name="config", overrides=["experiment=fmnist_bnn"])
        kd = compose(config_name="config", overrides=["experiment=fmnist_bnn_kd"])
    assert (kd.distill.name, kd.loss.ce, kd.loss.kd.weight, kd.loss.kd.temperature) == ("kd", 1.0, 1.0, 4.0)
    for key in ("arch", "estimator", "optimizer", "scheduler", "trainer", "data", "binarize"):
        assert kd[key] == plain[key], key  # the same student, schedule and budget
    assert kd.distill.teacher.epochs == plain.trainer.max_epochs

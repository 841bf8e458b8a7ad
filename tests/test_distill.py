"""Distillation: losses against hand computations, what each preset optimizes against the
published weighted sum, the teacher's isolation, hook hygiene, and the progressive multi-stage
recipe (weights handed from stage to stage, their terms, resume)."""

import csv
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from bnn_lab.assembly import load_trained
from bnn_lab.assembly.old_spellings import refuse_old_spelling
from bnn_lab.errors import ConfigError, UserError
from bnn_lab.losses import FeatureCapture, attention_loss, default_points, kd_loss
from bnn_lab.models import create
from bnn_lab.training import run as run_module
from bnn_lab.training.module import ClassificationModule
from bnn_lab.training.stages import PREVIOUS, plan_run, plan_stages

CONF = str(Path(__file__).resolve().parents[1] / "conf")


def test_attention_loss_by_hand():
    # one sample, 2 channels, 1x2 positions
    s = torch.tensor([[[[1.0, 2.0]], [[0.0, 2.0]]]])  # sum_c A^2 = [1, 8]
    t = torch.tensor([[[[3.0, 0.0]], [[4.0, 0.0]]]])  # sum_c A^2 = [25, 0]
    qs = [1 / math.sqrt(65), 8 / math.sqrt(65)]
    qt = [1.0, 0.0]
    expected = ((qs[0] - qt[0]) ** 2 + (qs[1] - qt[1]) ** 2) / 2
    assert attention_loss([s], [t]).item() == pytest.approx(expected, rel=1e-6)
    # two blocks add up
    assert attention_loss([s, s], [t, t]).item() == pytest.approx(2 * expected, rel=1e-6)


def test_kd_loss_by_hand():
    zs = torch.tensor([[1.0, 0.0]])
    zt = torch.tensor([[0.0, 2.0]])
    T = 2.0
    ps = torch.softmax(zs / T, -1)[0]
    pt = torch.softmax(zt / T, -1)[0]
    expected = T * T * sum(pt[i] * (math.log(pt[i]) - math.log(ps[i])) for i in range(2))
    assert kd_loss(zs, zt, T).item() == pytest.approx(float(expected), rel=1e-6)


def _composed(*overrides: str):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def _loss(*overrides: str) -> dict:
    return OmegaConf.to_container(_composed(*overrides).loss, resolve=True)


@pytest.mark.parametrize(
    "preset,ce,kd,temperature,attention",
    [("kd", 1.0, 1.0, 4.0, 0.0), ("real2bin", 1.0, 3.0, 1.0, 30.0)],
)
def test_a_distillation_preset_optimizes_its_published_weighted_sum(preset, ce, kd, temperature, attention):
    """The loss of one training step of a run composed with ``distill=<preset>`` equals
    ce CE + kd T^2 KL + attention sum_blocks attention-transfer, computed here from the terms'
    functions (each checked by hand above) with the published weights."""
    torch.manual_seed(0)
    student, teacher = create("resnet20", 1, 10, 8), create("resnet20", 1, 10, 8)
    loss = _loss(f"distill={preset}")
    module = ClassificationModule(student, 10, {"name": "adam"}, {"name": "none"}, teacher, None, loss)
    module.log = lambda *a, **k: None
    module.on_fit_start()
    x, y = torch.randn(6, 1, 8, 8), torch.tensor([0, 1, 2, 3, 4, 5])
    got = module.training_step((x, y), 0)
    module.on_fit_end()
    points = default_points(student)
    with FeatureCapture(student, points) as cs, FeatureCapture(teacher, points) as ct, torch.no_grad():
        zs, zt = student(x), teacher(x)
        expected = ce * F.cross_entropy(zs, y) + kd * kd_loss(zs, zt, temperature)
        expected = expected + attention * attention_loss(cs.features(), ct.features())
    assert [term.name for term in module.terms] == (["kd", "attention"] if attention else ["kd"])
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_the_progressive_recipe_says_each_stages_terms_and_old_spellings_are_refused():
    stages = plan_stages(_composed("experiment=real2bin"))
    assert [s.terms for s in stages] == [
        {"ce": 1.0},  # full precision, no teacher
        {"ce": 1.0, "kd": {"weight": 3.0, "temperature": 1.0}, "attention": 30.0},
        {"ce": 1.0, "kd": {"weight": 3.0, "temperature": 1.0}, "attention": 30.0},
        {"ce": 1.0, "kd": {"weight": 0.8, "temperature": 1.0}},  # 1W1A: attention 0, KD 0.8 at T = 1
    ]
    assert [s.teacher for s in stages] == [None, "previous", "previous", "previous"]
    with pytest.raises(ConfigError, match="stage 1 sets loss and distill; what a stage optimizes is its terms"):
        OmegaConf.update(cfg := _composed("experiment=real2bin"), "stages.1.loss", {"kd": 3.0}, force_add=True)
        OmegaConf.update(cfg, "stages.1.distill", "real2bin", force_add=True)
        plan_stages(cfg)
    with pytest.raises(ConfigError, match=r"distill.kd is no longer a key: write loss.kd.weight=<weight>"):
        refuse_old_spelling("distill.kd")


def test_teacher_gets_no_gradient_and_is_not_saved():
    torch.manual_seed(0)
    student, teacher = create("resnet20", 1, 10, 8), create("resnet20", 1, 10, 8)
    loss = _loss("distill=real2bin")
    module = ClassificationModule(student, 10, {"name": "adam"}, {"name": "none"}, teacher, None, loss)
    module.log = lambda *a, **k: None
    module.on_fit_start()
    loss = module.training_step((torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])), 0)
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(not p.requires_grad for p in teacher.parameters())
    assert any(p.grad is not None for p in student.parameters())
    assert not teacher.training
    assert not any(k.startswith("teacher") for k in module.state_dict())
    module.on_fit_end()


def test_hooks_are_removed_after_use():
    model = create("resnet20", 1, 10, 8)
    points = default_points(model)
    assert len(points) == 9 and points[0] == "layer1.0"
    with FeatureCapture(model, points) as cap:
        model(torch.randn(2, 1, 8, 8))
        assert len(cap.features()) == 9
    assert all(not m._forward_hooks for m in model.modules())


def _cfg(*overrides):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(
            config_name="config",
            overrides=["data=digits", "logger=none", "trainer.enable_progress_bar=false", *overrides],
        )


# mechanics only: one short epoch per stage
RECIPE_1_EPOCH = [
    "experiment=real2bin",
    "trainer.limit_train_batches=4",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
] + [f"stages.{i}.epochs=1" for i in range(4)]


def distillation_hooks(module):
    """Forward hooks other than the weight group's (bnn_lab.layers.weight_group), which stays."""
    group = module.__dict__.get("_weight_group")
    return [h for h in module._forward_hooks.values() if group is None or getattr(h, "__self__", None) is not group]


def test_each_stage_starts_from_the_previous_stage_and_hooks_do_not_leak(tmp_path, monkeypatch):
    handed = []
    real_init = run_module.init_from

    def spy(model, state):
        fresh = real_init(model, state)
        after = model.state_dict()
        handed.append(all(torch.equal(after[k], v) for k, v in state.items() if k in after))
        assert not any(distillation_hooks(m) for m in model.modules())
        return fresh

    monkeypatch.setattr(run_module, "init_from", spy)
    metrics = run_module.train(_cfg(*RECIPE_1_EPOCH, "binarize.scale=gating"), tmp_path / "run")
    assert handed == [True, True, True]
    assert [s["name"] for s in metrics["stages"]] == ["fp", "soft", "binary_act", "1w1a"]
    assert [s["precision"] for s in metrics["stages"]] == ["fp", "soft", "binary_act", "1w1a"]
    assert metrics["test/acc"] == metrics["stages"][-1]["test/acc"]
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert len(saved["stages"]) == 4 and saved["epochs"] == 4
    # stage 1 ended with stage 0's conv weights moved on, not re-initialized
    s0 = torch.load(tmp_path / "run/stages/0_fp/final_weights.pt")
    s1 = torch.load(tmp_path / "run/stages/1_soft/final_weights.pt")
    assert "layer1.0.conv1.scale.fc1.weight" in s1  # gating works inside the recipe
    assert (
        torch.corrcoef(torch.stack([s0["layer3.2.conv2.weight"].flatten(), s1["layer3.2.conv2.weight"].flatten()]))[
            0, 1
        ]
        > 0.9
    )


def test_crashed_recipe_resumes_at_the_stage_where_it_stopped(tmp_path, monkeypatch):
    runs = []
    real_run = run_module._StageRunner.run

    def flaky(self, index, stage, n, previous):
        runs.append(stage.name)
        if stage.name == "binary_act" and runs.count("binary_act") == 1:
            raise RuntimeError("killed")
        return real_run(self, index, stage, n, previous)

    monkeypatch.setattr(run_module._StageRunner, "run", flaky)
    with pytest.raises(RuntimeError, match="killed"):
        run_module.train(_cfg(*RECIPE_1_EPOCH), tmp_path / "run")
    done = {p: p.stat().st_mtime for p in (tmp_path / "run/stages").glob("*/metrics.json")}
    assert len(done) == 2
    metrics = run_module.train(_cfg(*RECIPE_1_EPOCH, "resume=true"), tmp_path / "run")
    assert len(metrics["stages"]) == 4
    assert all(p.stat().st_mtime == t for p, t in done.items())  # finished stages were not retrained


def test_teacher_checkpoint_of_another_architecture_is_a_clear_error(tmp_path):
    cfg = _cfg("arch=resnet20")
    ckpt = tmp_path / "t.ckpt"
    other = create("vgg_small", 1, 10, 8)
    torch.save(
        {
            "state_dict": {f"model.{k}": v for k, v in other.state_dict().items()},
            "bnn_lab": {"arch": "vgg_small", "mode": "fp"},
        },
        ckpt,
    )
    with pytest.raises(UserError, match="is a vgg_small but arch.name is resnet20"):
        load_trained(str(ckpt), 8, asking=cfg, in_chans=1, num_classes=10, what="teacher checkpoint")
    torch.save({"state_dict": {f"model.{k}": v for k, v in other.state_dict().items()}}, ckpt)
    with pytest.raises(UserError, match="does not fit arch resnet20"):
        load_trained(str(ckpt), 8, asking=cfg, in_chans=1, num_classes=10, what="teacher checkpoint")
    with pytest.raises(UserError, match="does not exist"):
        load_trained(tmp_path / "nope.ckpt", 8, asking=cfg, in_chans=1, num_classes=10, what="teacher checkpoint")


def test_kd_with_teacher_from_checkpoint_through_the_cli(run_cli, tmp_path):
    teacher = run_cli(
        "precision=fp",
        "data=digits",
        "trainer.max_epochs=1",
        "logger=none",
        "trainer.enable_progress_bar=false",
        run_dir=tmp_path / "teacher",
    )
    assert teacher.returncode == 0, teacher.stderr[-2000:]
    ckpt = tmp_path / "teacher" / "checkpoints" / "last.ckpt"
    student = run_cli(
        "distill=kd",
        f"distill.teacher.ckpt={ckpt}",
        "data=digits",
        "trainer.max_epochs=1",
        "logger=none",
        "trainer.enable_progress_bar=false",
        run_dir=tmp_path / "student",
    )
    assert student.returncode == 0, student.stderr[-2000:]
    metrics = json.loads((tmp_path / "student" / "metrics.json").read_text())
    assert metrics["distill"] == "kd" and metrics["precision"] == "1w1a"
    wrong = run_cli(
        "distill=kd",
        f"distill.teacher.ckpt={ckpt}",
        "arch=vgg_small",
        "data=digits",
        "logger=none",
        run_dir=tmp_path / "wrong",
    )
    assert wrong.returncode == 2 and "resnet20 but arch.name is vgg_small" in wrong.stderr


def test_teacher_trained_in_the_run_ignores_the_students_loss_terms(run_cli, tmp_path):
    """With ``distill.teacher.cache=false`` the teacher is the run's first stage; it trains on
    plain cross-entropy (as a cached teacher does), so student terms that need a teacher (rbd)
    do not stop it, and only the student logs them."""
    proc = run_cli(
        "data=digits",
        "distill=kd",
        "distill.teacher.cache=false",
        "loss=[rbd]",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=3",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        "export.packed=false",
        "logger=csv",
        "trainer.enable_progress_bar=false",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    logged = {
        stage: csv.DictReader((proc.run_dir / "stages" / stage / "csv" / "metrics.csv").open()).fieldnames
        for stage in ("0_teacher", "1_student")
    }
    assert not any(k.startswith("train/rbd") for k in logged["0_teacher"])
    assert any(k.startswith("train/rbd") for k in logged["1_student"])


def test_presets_say_no_old_key_and_a_yaml_that_does_is_refused_at_the_start(tmp_path):
    from bnn_lab.assembly.old_spellings import refuse_old_keys

    conf = Path(CONF)
    for group in ("experiment", "arm"):
        for preset in sorted((conf / group).glob("*.yaml")):
            refuse_old_keys(_composed(f"{group}={preset.stem}"))  # raises on distill.kd: ... and the like
    cfg = _composed("distill=kd")
    OmegaConf.set_struct(cfg, False)
    cfg.distill.kd = 0.0  # what an earlier version's preset said for "the teacher alone"
    with pytest.raises(ConfigError, match="distill.kd is no longer a key: write loss.kd.weight"):
        run_module.train(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "config.yaml").exists()  # refused before anything was written


def _fake_train(calls: list):
    """Stands in for training: records the call, writes a run folder with a best checkpoint."""

    def train(tcfg, run_dir: Path) -> dict:
        calls.append(tcfg)
        torch.rand(3)  # draws, as a real training does
        (run_dir / "checkpoints").mkdir(parents=True)
        (run_dir / "checkpoints" / "best-epoch00.ckpt").write_text("weights")
        metrics = {"global_steps": 5, "best_checkpoint": str(run_dir / "checkpoints" / "best-epoch00.ckpt")}
        (run_dir / "metrics.json").write_text(json.dumps(metrics))
        return metrics

    return train


def test_plan_run_decides_each_teacher_once_and_leaves_the_random_state(tmp_path):
    calls: list = []
    train = _fake_train(calls)
    cache = f"distill.teacher.cache={tmp_path / 'cache'}"
    assert [(s.name, s.teacher) for s in plan_run(_composed(), train).stages] == [("train", None)]

    torch.manual_seed(0)
    expected = torch.rand(4)
    torch.manual_seed(0)
    plan = plan_run(_composed("distill=kd", cache, "seed=3"), train)  # not cached yet: trained now
    assert torch.equal(torch.rand(4), expected)  # the student draws what a plain run draws
    assert len(calls) == 1 and calls[0].precision == "fp" and calls[0].distill.name == "none"
    (stage,) = plan.stages
    assert stage.teacher == str(plan.teacher.checkpoint) and plan.teacher.trained
    assert Path(stage.teacher).parent.parent.parent == tmp_path / "cache"

    again = plan_run(_composed("distill=kd", cache, "seed=3"), train)  # found: not trained again
    assert len(calls) == 1 and not again.teacher.trained and again.stages[0].teacher == stage.teacher

    given = plan_run(_composed("distill=kd", f"distill.teacher.ckpt={stage.teacher}"), train)
    assert len(calls) == 1 and given.stages[0].teacher == stage.teacher and given.teacher.key == ""

    in_run = plan_run(_composed("distill=kd", "distill.teacher.cache=false"), train)
    assert [(s.name, s.precision, s.teacher) for s in in_run.stages] == [
        ("teacher", "fp", None),
        ("student", "1w1a", PREVIOUS),
    ]
    assert in_run.teacher is None and len(calls) == 1

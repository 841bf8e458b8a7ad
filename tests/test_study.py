"""Studies: arms x seeds grouped by bnn-lab-report (paired differences, refused unequal
budgets, the baseline), the study presets (a seed axis, arms that compose, equal budgets),
the teacher cache (one training however many runs ask at once), best-checkpoint lookup
(names without '=' and the old ones), and a study on digits end to end through the CLI."""

from __future__ import annotations

import csv
import json
import multiprocessing
import time
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from test_multirun import bnn_lab

from bnn_lab.assembly import build_model
from bnn_lab.assembly.trained import find_best_checkpoint
from bnn_lab.errors import UserError
from bnn_lab.report import build_report, collect_runs
from bnn_lab.report.stats import estimate, paired_difference
from bnn_lab.report.study import build_studies
from bnn_lab.training.stages import plan_stages

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
STUDIES = sorted(p.stem for p in (CONF / "experiment").glob("study_*.yaml"))


def fake_run(
    folder: Path,
    arm: str,
    seed: int,
    acc: float,
    steps: int = 100,
    study: str = "demo",
    baseline: str | None = None,
    estimator: str = "ste",
    extra: tuple[str, ...] = (),
) -> None:
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(
        json.dumps(
            {
                "test/acc": acc,
                "seed": seed,
                "global_steps": steps,
                "epochs": 1,
                "data": "digits",
                "arch": "resnet20",
                "estimator": estimator,
                "distill": "none",
            }
        )
    )
    config = {
        "seed": seed,
        "arch": {"name": "resnet20"},
        "data": {"name": "digits", "batch_size": 32},
        "estimator": {"name": estimator},
        "trainer": {"max_epochs": 1, "limit_train_batches": steps},
        "study": {"name": study, "baseline": baseline},
        "logger": {"name": "csv"},
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / ".hydra").mkdir()
    (folder / ".hydra" / "overrides.yaml").write_text(
        yaml.safe_dump([f"estimator={estimator}", f"seed={seed}", "experiment=demo", *extra])
    )


def test_arms_paired_by_seed_against_the_study_baseline(tmp_path):
    accs = {"ste": [0.80, 0.85, 0.90], "fda": [0.81, 0.87, 0.90]}
    for i, (est, values) in enumerate([(e, v) for e, vs in accs.items() for v in [vs]]):
        for seed, acc in zip((1, 2, 3), values):
            fake_run(
                tmp_path / f"{i * 3 + seed}_{est}_s{seed}", est, seed, acc, baseline="estimator=fda", estimator=est
            )
    [study] = build_studies(collect_runs(tmp_path))
    assert [a.label for a in study.arms] == ["estimator=ste", "estimator=fda"]
    assert study.baseline.label == "estimator=fda"  # named by the preset, not the first arm
    arm = study.arms[0]
    assert arm.accs == dict(zip((1, 2, 3), accs["ste"]))
    assert arm.estimate == estimate(accs["ste"])
    [comparison] = study.comparisons
    assert comparison.arm is arm
    # ste - fda: -0.01, -0.02, 0.00 by seed
    assert comparison.diff.mean == pytest.approx(-0.01) and comparison.diff.std == pytest.approx(0.01)
    assert comparison.verdict == "not distinguishable"
    [other] = build_studies(collect_runs(tmp_path), baseline="estimator=ste")[0].comparisons
    assert other.arm.label == "estimator=fda" and other.diff.mean == pytest.approx(0.01)
    with pytest.raises(UserError, match="baseline 'sign' is no arm.*arms: estimator=ste, estimator=fda"):
        build_studies(collect_runs(tmp_path), baseline="sign")


def test_a_study_whose_preset_baseline_has_no_run_yet_is_reported_against_its_first_arm(tmp_path):
    """A study still running (its preset's baseline not tested yet) is reported, against the first
    arm, and says so; a --baseline that names no arm still fails."""
    for seed, (a, b) in zip((1, 2, 3), ((0.80, 0.82), (0.85, 0.86), (0.90, 0.93))):
        fake_run(tmp_path / f"{seed}_ste_s{seed}", "ste", seed, a, baseline="estimator=mlp", estimator="ste")
        fake_run(tmp_path / f"{3 + seed}_fda_s{seed}", "fda", seed, b, baseline="estimator=mlp", estimator="fda")
    [study] = build_studies(collect_runs(tmp_path))
    assert study.baseline.label == "estimator=ste"
    [comparison] = study.comparisons
    assert comparison.diff.mean == pytest.approx(0.02)  # fda - ste: 0.02, 0.01, 0.03
    assert study.notes == ["the preset's baseline estimator=mlp has no tested run yet: compared with estimator=ste"]
    with pytest.raises(UserError, match="baseline 'estimator=mlp' is no arm"):
        build_studies(collect_runs(tmp_path), baseline="estimator=mlp")


def test_parts_of_a_grid_started_with_other_bookkeeping_form_the_same_arms(tmp_path):
    """One part of a study started with resume=true and a checkpoint interval, the other without:
    the arms are named by what makes them arms (the estimator), and the preset's baseline is found."""
    bookkeeping = ("resume=true", "checkpoint.every_n_train_steps=60", "study.tune=6", "+hydra.job.chdir=false")
    for seed, (a, b) in zip((1, 2, 3), ((0.80, 0.82), (0.85, 0.86), (0.90, 0.93))):
        ste = {"baseline": "estimator=ste", "estimator": "ste", "extra": bookkeeping}
        fake_run(tmp_path / "a" / f"s{seed}", "ste", seed, a, **ste)
        fake_run(tmp_path / "b" / f"s{seed}", "fda", seed, b, baseline="estimator=ste", estimator="fda")
    [study] = build_studies(collect_runs(tmp_path))
    assert [a.label for a in study.arms] == ["estimator=ste", "estimator=fda"]
    assert study.baseline.label == "estimator=ste" and not study.notes


def test_arms_of_one_estimator_keep_their_own_rows_in_the_per_configuration_table(tmp_path):
    """Two methods that both train with the STE (say a plain arm and RBONN): the summary table
    gives each arm its own mean, not one row of six runs."""
    for seed, (a, b) in zip((1, 2, 3), ((0.80, 0.70), (0.82, 0.72), (0.84, 0.74))):
        for arm, acc in (("plain", a), ("rbonn", b)):
            fake_run(tmp_path / f"{arm}{seed}", arm, seed, acc, extra=(f"arm={arm}",))
            config = yaml.safe_load((tmp_path / f"{arm}{seed}" / "config.yaml").read_text())
            config["binarize"] = {"scale": {"name": "none" if arm == "plain" else "rbonn"}}
            (tmp_path / f"{arm}{seed}" / "config.yaml").write_text(yaml.safe_dump(config))
    build_report(tmp_path, tmp_path / "report")
    table = (tmp_path / "report" / "report.md").read_text().split("per configuration")[1].split("## Runs")[0]
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in table.splitlines() if "| demo" in line}
    assert sorted(rows) == ["demo: plain", "demo: rbonn"]
    assert [rows["demo: plain"][i] for i in (5, 6)] == ["3", "82.00"]  # runs, mean (%)
    assert [rows["demo: rbonn"][i] for i in (5, 6)] == ["3", "72.00"]


def test_unequal_budgets_are_refused_and_reported(tmp_path):
    for seed, acc in zip((1, 2, 3), (0.80, 0.81, 0.82)):
        fake_run(tmp_path / f"a{seed}", "ste", seed, acc, steps=100, estimator="ste")
        fake_run(tmp_path / f"b{seed}", "fda", seed, acc + 0.05, steps=200, estimator="fda")
    report = build_report(tmp_path, tmp_path / "report")
    [comparison] = report.studies[0].comparisons
    assert comparison.diff is None and "unequal budget (steps 200 vs 100)" in comparison.note
    rows = {r["arm"]: r for r in csv.DictReader((tmp_path / "report" / "study.csv").open())}
    assert rows["estimator=fda"]["verdict"] == "" and rows["estimator=fda"]["diff"] == ""
    assert "refused: unequal budget (steps 200 vs 100)" in (tmp_path / "report" / "report.md").read_text()


@pytest.mark.parametrize("name", STUDIES)
def test_study_preset_has_seeds_and_arms_with_equal_budgets(name):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        base = compose("config", overrides=[f"experiment={name}"], return_hydra_config=True)
        params = base.hydra.sweeper.params
        seeds = str(params.seed).split(",")
        assert len(seeds) >= 3, f"{name}: at least 3 seeds"
        axis, options = next((k, str(v).split(",")) for k, v in params.items() if k != "seed")
        assert len(options) >= 3
        assert (
            str(base.study.baseline).removeprefix(f"{axis}=") in options
            if axis != "arm"
            else base.study.baseline in options
        )
        budgets = {}
        for option in options:
            cfg = compose("config", overrides=[f"experiment={name}", f"{axis}={option}"])
            final = plan_stages(cfg)[-1]
            assert final.precision == "1w1a", (name, option)
            _, surgery = build_model(cfg, 1, 10, 28, precision=final.precision)  # the arm's network exists
            assert surgery.binarized, (name, option)
            budgets[option] = (cfg.data.name, cfg.data.batch_size, cfg.trainer.limit_train_batches, final.epochs)
        assert len(set(budgets.values())) == 1, budgets
        scaled = compose("config", overrides=[f"experiment={name}", f"{axis}={options[-1]}", "study.epochs=30"])
        assert plan_stages(scaled)[-1].epochs == 30


# budget option: (epochs of every stage and teacher, batches per epoch, trainer's accelerator)
BUDGETS = {"short": (1, 0.4, "auto"), "cpu": (3, 1.0, "auto"), "gpu": (10, 1.0, "gpu")}


@pytest.mark.parametrize("name", STUDIES)
def test_one_budget_switch_sets_every_stage_of_every_arm(name):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        params = compose("config", overrides=[f"experiment={name}"], return_hydra_config=True).hydra.sweeper.params
        axis, options = next((k, str(v).split(",")) for k, v in params.items() if k != "seed")
        for budget, (epochs, batches, accelerator) in BUDGETS.items():
            for option in options:
                cfg = compose("config", overrides=[f"experiment={name}", f"{axis}={option}", f"budget={budget}"])
                assert cfg.study.budget == budget
                assert [s.epochs for s in plan_stages(cfg)] == [epochs] * len(plan_stages(cfg)), (budget, option)
                assert (cfg.trainer.limit_train_batches, cfg.trainer.accelerator) == (batches, accelerator)
                if "teacher" in cfg.distill:
                    assert cfg.distill.teacher.epochs == epochs


def _fake_teacher_training(cache: str, calls: str, start: float) -> None:
    from omegaconf import OmegaConf

    from bnn_lab.training.teacher_cache import cached_teacher

    cfg = OmegaConf.create(
        {
            "seed": 1,
            "arch": {"name": "resnet20"},
            "data": {"name": "digits"},
            "trainer": {"max_epochs": 1},
            "export": {"packed": True},
            "logger": {"name": "none"},
            "distill": {"name": "kd", "teacher": {"epochs": 1, "cache": cache}},
        }
    )

    def train(tcfg, run_dir: Path) -> dict:
        with open(calls, "a") as fh:
            fh.write("trained\n")
        time.sleep(1.0)  # long enough for the other process to ask meanwhile
        (run_dir / "checkpoints").mkdir(parents=True)
        (run_dir / "checkpoints" / "best-epoch00.ckpt").write_text("weights")
        metrics = {"global_steps": 7, "best_checkpoint": str(run_dir / "checkpoints" / "best-epoch00.ckpt")}
        (run_dir / "metrics.json").write_text(json.dumps(metrics))
        return metrics

    while time.time() < start:
        time.sleep(0.01)
    teacher = cached_teacher(cfg, train)
    assert teacher.checkpoint.is_file() and teacher.metrics["global_steps"] == 7


def test_teacher_cache_trains_once_when_two_runs_ask_at_once(tmp_path):
    calls = tmp_path / "calls.txt"
    start = time.time() + 1.0
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_fake_teacher_training, args=(str(tmp_path / "cache"), str(calls), start)) for _ in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    assert calls.read_text().splitlines() == ["trained"]
    [folder] = [p for p in (tmp_path / "cache").iterdir() if p.is_dir()]
    assert folder.name.startswith("resnet20-digits-s1-")
    assert json.loads((folder / "metrics.json").read_text())["best_checkpoint"] == str(
        folder / "checkpoints" / "best-epoch00.ckpt"
    )  # the path after the rename


def test_best_checkpoint_of_a_run_directory(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    for name in ("last.ckpt", "best-epoch=01.ckpt"):  # a run of an earlier version
        (run / "checkpoints" / name).write_text("x")
    with pytest.raises(
        UserError, match="best-epoch=01.ckpt has the name of an earlier version; rename it best-epoch01"
    ):
        find_best_checkpoint(run)
    (run / "checkpoints" / "best-epoch01.ckpt").write_text("x")
    (run / "checkpoints" / "best-epoch03.ckpt").write_text("x")
    assert find_best_checkpoint(run) == run / "checkpoints" / "best-epoch03.ckpt"  # the later epoch
    (run / "metrics.json").write_text(json.dumps({"best_checkpoint": str(run / "checkpoints" / "best-epoch01.ckpt")}))
    assert find_best_checkpoint(run) == run / "checkpoints" / "best-epoch01.ckpt"  # the one the run tested
    assert find_best_checkpoint(run / "checkpoints" / "last.ckpt") == run / "checkpoints" / "last.ckpt"
    recipe = tmp_path / "recipe"
    for stage in ("0_fp", "1_soft", "10_1w1a"):
        (recipe / "stages" / stage / "checkpoints").mkdir(parents=True)
        (recipe / "stages" / stage / "checkpoints" / "best-epoch00.ckpt").write_text("x")
    assert find_best_checkpoint(recipe) == recipe / "stages" / "10_1w1a" / "checkpoints" / "best-epoch00.ckpt"
    with pytest.raises(UserError, match="no best checkpoint"):
        find_best_checkpoint(tmp_path / "recipe" / "stages")


@pytest.mark.slow
def test_distillation_study_on_digits_trains_each_teacher_once(tmp_path):
    """`-m distill=none,kd seed=1,2`: two arms x two seeds, one teacher per seed trained once,
    every student the plain arm's steps; the report pairs the arms and lists the teachers."""
    sweep, cache = tmp_path / "study", tmp_path / "teachers"
    tiny = [
        "data=digits",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=8",
        "trainer.limit_val_batches=2",
        "trainer.limit_test_batches=2",
        "trainer.enable_progress_bar=false",
        "export.packed=false",
        "logger=csv",
    ]
    # distill=none has no distill.teacher.cache: a sweep with it names the cache in the environment
    proc = bnn_lab(
        "-m",
        "distill=none,kd",
        "seed=1,2",
        *tiny,
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        env={"BNN_LAB_TEACHERS": str(cache)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/metrics.json")}
    assert len(jobs) == 4
    students = [m for m in jobs.values() if m["distill"] == "kd"]
    plain = [m for m in jobs.values() if m["distill"] == "none"]
    assert {m["seed"] for m in students} == {m["seed"] for m in plain} == {1, 2}
    assert {m["global_steps"] for m in students + plain} == {8}  # every student the plain arm's steps
    assert all("teacher" not in m for m in plain) and all("stages" not in m for m in students)
    teachers = sorted(p for p in cache.iterdir() if p.is_dir())
    assert len(teachers) == 2  # one per seed
    assert sorted(m["teacher"]["dir"] for m in students) == sorted(str(p) for p in teachers)
    assert [m["teacher"]["trained_in_this_run"] for m in students] == [True, True]
    logs = sweep.glob("*/*.log")
    assert sum(p.read_text().count("training the full-precision teacher") for p in logs) == 2  # counted

    report = build_report(sweep, tmp_path / "report")
    [study] = report.studies
    assert [a.label for a in study.arms] == ["distill=none", "distill=kd"] and study.baseline.label == "distill=none"
    [kd] = study.comparisons
    by_seed = {(m["distill"], m["seed"]): m["test/acc"] for m in jobs.values()}
    expected = paired_difference({s: by_seed[("kd", s)] for s in (1, 2)}, {s: by_seed[("none", s)] for s in (1, 2)})
    assert kd.diff == expected and kd.note == ""
    assert [t["used_by"] for t in study.teachers()] == [1, 1]
    assert (tmp_path / "report" / "steps.png").is_file() and (tmp_path / "report" / "arms.png").is_file()
    rows = {r["arm"]: r for r in csv.DictReader((tmp_path / "report" / "study.csv").open())}
    assert rows["distill=kd"]["teacher_steps"] == "8" and rows["distill=none"]["teacher_steps"] == "0"

    # the same students again: both teachers come from the cache, none is trained
    again = bnn_lab(
        "-m",
        "distill=kd",
        "seed=1,2",
        *tiny,
        f"distill.teacher.cache={cache}",
        f"hydra.sweep.dir={tmp_path / 'again'}",
        cwd=tmp_path,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    reused = [json.loads(p.read_text()) for p in (tmp_path / "again").glob("*/metrics.json")]
    assert [m["teacher"]["trained_in_this_run"] for m in reused] == [False, False]
    assert sorted(m["test/acc"] for m in reused) == sorted(m["test/acc"] for m in students)  # same teacher, same run
    # a best checkpoint's path goes back on the command line as it is
    best = next(teachers[0].glob("checkpoints/best-*.ckpt"))
    assert "=" not in best.name
    single = bnn_lab(
        "distill=kd",
        f"distill.teacher.ckpt={best}",
        "seed=1",
        *tiny,
        f"hydra.run.dir={tmp_path / 'single'}",
        cwd=tmp_path,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    assert json.loads((tmp_path / "single" / "metrics.json").read_text())["teacher"]["checkpoint"] == str(best)


def test_a_student_with_a_zero_distillation_weight_is_the_plain_run(tmp_path):
    """Pairing by seed: a KD student whose KD weight is 0 gets the plain run's initialization,
    batches and steps, bit for bit, whether its teacher is trained first in the same process
    or found in the cache."""
    import torch

    from bnn_lab.training.run import train

    def cfg(*extra):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose(
                "config",
                overrides=[
                    "data=digits",
                    "seed=3",
                    "trainer.max_epochs=1",
                    "trainer.limit_train_batches=6",
                    "trainer.limit_val_batches=2",
                    "trainer.limit_test_batches=2",
                    "logger=none",
                    "export.packed=false",
                    "trainer.enable_progress_bar=false",
                    *extra,
                ],
            )

    cache = f"distill.teacher.cache={tmp_path / 'teachers'}"
    plain = train(cfg(), tmp_path / "plain")
    trained_here = train(cfg("distill=kd", "loss.kd.weight=0", cache), tmp_path / "kd_first")
    from_cache = train(cfg("distill=kd", "loss.kd.weight=0", cache), tmp_path / "kd_cached")
    assert trained_here["teacher"]["trained_in_this_run"] and not from_cache["teacher"]["trained_in_this_run"]
    weights = {name: torch.load(tmp_path / name / "final_weights.pt") for name in ("plain", "kd_first", "kd_cached")}
    for name in ("kd_first", "kd_cached"):
        assert weights[name].keys() == weights["plain"].keys()
        assert all(torch.equal(weights[name][k], v) for k, v in weights["plain"].items()), name
    assert plain["global_steps"] == trained_here["global_steps"] == from_cache["global_steps"] == 6
    assert plain["test/acc"] == trained_here["test/acc"] == from_cache["test/acc"]


def test_a_tuned_study_is_reported_beside_the_untuned_one_with_its_settings_and_cost(tmp_path):
    untuned = {"ste": [0.80, 0.81, 0.82], "fda": [0.78, 0.79, 0.80]}  # fda - ste: -2 pp every seed: a loss
    tuned = {"ste": [0.84, 0.85, 0.86], "fda": [0.84, 0.85, 0.86]}  # equal once both are tuned
    for kind, accs in (("untuned", untuned), ("tuned", tuned)):
        for est, values in accs.items():
            for seed, acc in zip((1, 2, 3), values):
                folder = tmp_path / kind / f"{est}_s{seed}"
                fake_run(folder, est, seed, acc, baseline="estimator=ste", estimator=est)
                if kind == "tuned":
                    metrics = json.loads((folder / "metrics.json").read_text())
                    lr = 0.004 if est == "ste" else 0.0021
                    metrics["tuning"] = {"arm": est, "params": {"optimizer.lr": lr}, "best_trial": 2,
                                         "best_val_acc": 0.9, "trials": 6, "steps": 6 * 100}  # fmt: skip
                    (folder / "metrics.json").write_text(json.dumps(metrics))
    studies = build_studies(collect_runs(tmp_path))
    assert [(s.name, s.tuned) for s in studies] == [("demo", False), ("demo", True)]
    assert studies[0].comparisons[0].verdict == "loss" and studies[1].comparisons[0].verdict == "not distinguishable"
    from bnn_lab.report import main

    main([str(tmp_path), "--out", str(tmp_path / "report")])
    text = (tmp_path / "report" / "report.md").read_text()
    assert "## Study `demo`, each arm tuned first" in text
    assert "| estimator=fda | optimizer.lr=0.0021 | 90.00 | 6 | 600 |" in text
    row = next(line for line in text.splitlines() if line.startswith("| estimator=fda | -2.00"))
    assert "loss" in row and "not distinguishable" in row and "**changed**" in row
    with (tmp_path / "report" / "study.csv").open() as fh:
        tuned_rows = [r for r in csv.DictReader(fh) if r["tuned"] == "True"]
    assert {r["tuned_setting"] for r in tuned_rows} == {"optimizer.lr=0.004", "optimizer.lr=0.0021"}

"""The W&B sweep files of sweeps/, checked offline with W&B's own code.

* W&B's sweep engine (the PyPI package ``sweeps``: the schema check and the next-run
  proposals of the W&B server) validates each file and proposes its first runs. ``sweeps``
  pins numpy<2 while this project needs numpy 2, so it is installed with ``--no-deps`` into
  a folder of its own (only its two missing pure-Python dependencies, jsonschema and jsonref,
  come along) and runs in a subprocess on top of the project's numpy/scipy/scikit-learn.
  Set BNN_LAB_SWEEPS_ENGINE=<folder> to reuse an installed copy.
* wandb's agent (``wandb.wandb_agent.Agent``) turns a proposed run into the command line,
  expanding the ``command:`` macros (``${env}``, ``${program}``, ``${args_no_hyphens}``).
* One command line per executed sweep then really runs, with a tiny budget appended.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from unittest import mock

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SWEEPS = sorted((REPO / "sweeps").glob("*.yaml"))
CONF = REPO / "conf"
ENGINE_VERSION = "0.3.0"
# sweep values that name config-group options another change is adding; tolerated only while
# their conf file is missing (every other value must be an option of conf/<group>/)
PENDING = {("distill", "kd"), ("distill", "real2bin")}
# appended to an agent's command line to run it here in seconds
TINY = [
    "data=digits",
    "trainer=debug",
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "logger.mode=offline",
]

_DRIVER = r"""
import json, random, sys, warnings
warnings.simplefilter("ignore")
import yaml
import sweeps
from sweeps import RunState, next_run, schema_violations_from_proposed_config

n_max, paths = int(sys.argv[1]), sys.argv[2:]
out = {"engine": sweeps.__file__}
for path in paths:
    cfg = yaml.safe_load(open(path))
    violations = [str(v) for v in schema_violations_from_proposed_config(cfg)]
    runs, rng, metric = [], random.Random(0), (cfg.get("metric") or {}).get("name", "loss")
    n = n_max if cfg.get("method") == "grid" else 4  # a grid ends by itself; bayes/random never
    while not violations and len(runs) < n:
        run = next_run(cfg, runs, validate=False)  # validated once above
        if run is None:
            break
        run.name = f"run-{len(runs)}"
        runs.append(run)
        # pretend the run finished, so that bayes fits its model on something
        run.state = RunState.finished
        run.summary_metrics = {metric: rng.random()}
        run.history = [{metric: rng.random()} for _ in range(3)]
    out[path] = {"violations": violations,
                 "runs": [{k: v["value"] for k, v in r.config.items()} for r in runs]}
json.dump(out, sys.stdout, default=str)
"""


@pytest.fixture(scope="session")
def sweeps_engine(tmp_path_factory) -> Path:
    given = os.environ.get("BNN_LAB_SWEEPS_ENGINE")
    if given and (Path(given) / "sweeps" / "__init__.py").is_file():
        return Path(given)
    target = Path(given) if given else tmp_path_factory.mktemp("sweeps-engine")
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target", str(target)]
    for args in (["--no-deps", f"sweeps=={ENGINE_VERSION}"], ["jsonschema", "jsonref"]):
        proc = subprocess.run(pip + args, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"cannot install W&B's sweep engine: {proc.stderr[-2000:]}"
    return target


@pytest.fixture(scope="session")
def proposals(sweeps_engine, tmp_path_factory):
    """{sweep file name: {"violations": [...], "runs": [{param: value}, ...]}}: the first
    proposals of W&B's engine (the whole grid for grids, up to 400; 4 runs otherwise)."""
    driver = tmp_path_factory.mktemp("driver") / "driver.py"
    driver.write_text(_DRIVER)
    env = {**os.environ, "PYTHONPATH": str(sweeps_engine)}
    proc = subprocess.run(
        [sys.executable, str(driver), "400", *map(str, SWEEPS)],
        capture_output=True,
        text=True,
        env=env,
        cwd=driver.parent,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert Path(out.pop("engine")).is_relative_to(sweeps_engine), "the engine must come from its own folder"
    return {Path(k).name: v for k, v in out.items()}


def agent_command(sweep: dict, run_params: dict, run_id: str, wandb_dir: Path) -> tuple[list[str], dict]:
    """The command line and environment that ``wandb agent`` builds for one proposed run."""
    import wandb.wandb_agent as wandb_agent

    seen = {}

    class Recorder:  # stands in for the agent's subprocess launcher
        def __init__(self, command=None, env=None, **kwargs):
            seen.update(command=command, env=env)

    with (
        mock.patch.dict(os.environ, {"WANDB_DIR": str(wandb_dir), "WANDB_SWEEP_ID": "offline-sweep"}),
        mock.patch.object(wandb_agent, "AgentProcess", Recorder),
    ):
        agent = wandb_agent.Agent(api=None, queue=None, sweep_id="offline-sweep")
        agent._sweep_command = list(sweep["command"])
        agent._command_run(
            {"run_id": run_id, "program": sweep["program"], "args": {k: {"value": v} for k, v in run_params.items()}}
        )
    return seen["command"], seen["env"]


def _groups() -> set[str]:
    return {p.name for p in CONF.iterdir() if p.is_dir()}


def test_sweep_files_exist():
    assert {p.name for p in SWEEPS} >= {"estimator_x_arch.yaml", "lr_bayes.yaml", "distill.yaml"}


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_sweep_file_is_valid_for_wandb(path, proposals):
    text = path.read_text()
    sweep = yaml.safe_load(text)
    result = proposals[path.name]
    assert result["violations"] == [], result["violations"]
    assert sweep["metric"] == {"name": "val/acc", "goal": "maximize"}  # what the training logs
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert sweep["program"] in scripts
    command = sweep["command"]
    assert re.search(r"^command:\n(  - .+\n)+", text, re.M), "command: must be a YAML block list"
    assert command[:2] == ["${env}", "${program}"] and command[-1] == "${args_no_hyphens}"
    assert "logger.mode=online" in command, "agent runs must report to the W&B server"
    runs = result["runs"]
    assert runs and all(set(r) == set(sweep["parameters"]) for r in runs)
    if sweep["method"] == "grid":  # the engine walks the whole grid, each point once
        values = [p.get("values", [p.get("value")]) for p in sweep["parameters"].values()]
        assert len(runs) == math.prod(len(v) for v in values)
        assert {tuple(r[k] for k in sweep["parameters"]) for r in runs} == set(itertools.product(*values))


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_proposed_runs_compose(path, proposals, tmp_path):
    """Proposed command lines (one per swept option) pass bnn-lab's own checks: group options
    exist, keys exist, values have the right type."""
    from bnn_lab.cli.overrides import check_composition, check_group_choices

    sweep = yaml.safe_load(path.read_text())
    groups = _groups()
    for name, param in sweep["parameters"].items():
        if name in groups:
            options = {p.stem for p in (CONF / name).glob("*.yaml")}
            unknown = {str(v) for v in param.get("values", [param.get("value")])} - options
            assert {(name, v) for v in unknown} <= PENDING, f"{path.name}: unknown {name} options {unknown}"
    runs = proposals[path.name]["runs"]
    # the first run, and the first run with each option of each swept config group
    picked = {0} | {
        next(i for i, r in enumerate(runs) if r[name] == v)
        for name, param in sweep["parameters"].items()
        if name in groups and "values" in param
        for v in param["values"]
        if any(r[name] == v for r in runs)
    }
    checked = 0
    for i in sorted(picked):
        run = runs[i]
        if any((k, str(v)) in PENDING and not (CONF / k / f"{v}.yaml").is_file() for k, v in run.items()):
            continue
        command, _ = agent_command(sweep, run, f"compose{i}", tmp_path)
        args = command[2:] + [f"hydra.run.dir={tmp_path / 'run'}"]
        check_group_choices(args, CONF)
        check_composition(args, CONF)
        checked += 1
    assert checked


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_sweeps_that_compare_arms_repeat_each_over_seeds(path):
    """A grid over config-group options (estimators, architectures, distillation methods)
    compares arms: each arm runs with at least 3 seeds, so that bnn-lab-report can put an
    interval on each arm and on its paired difference."""
    sweep = yaml.safe_load(path.read_text())
    params = sweep["parameters"]
    arms = [k for k, p in params.items() if k in _groups() and len(p.get("values", [])) > 1]
    if sweep["method"] != "grid" or not arms:
        return
    seeds = params.get("seed", {}).get("values", [])
    assert len(set(seeds)) >= 3, f"{path.name} compares {', '.join(arms)} but runs {len(set(seeds))} seed(s)"


def test_agent_command_runs_the_chosen_parameters(proposals, tmp_path):
    """The first run W&B's Bayesian search proposes, run the way `wandb agent` runs it: its
    config groups (estimator=fda, optimizer=adam, ...) and sampled floats reach the config."""
    name = "lr_bayes.yaml"
    sweep = yaml.safe_load((REPO / "sweeps" / name).read_text())
    chosen = proposals[name]["runs"][0]
    assert any(k in _groups() for k in chosen) and any(isinstance(v, float) for v in chosen.values())
    command, env = agent_command(sweep, chosen, "agentrun1", tmp_path / "agent")
    assert command[0] == "/usr/bin/env" and command[1] == "bnn-lab"
    assert [f"{k}={v}" for k, v in chosen.items()] == command[-len(chosen) :]
    run_dir = tmp_path / "run"
    env = {**env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        command + TINY + [f"hydra.run.dir={run_dir}"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    from omegaconf import OmegaConf

    cfg = OmegaConf.load(run_dir / "config.yaml")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key, value in chosen.items():
        if key == "data":
            assert cfg.data.name == "digits"  # replaced by the tiny budget
        elif key in _groups():  # the option the sweep chose is the one composed
            assert cfg[key].name == OmegaConf.load(CONF / key / f"{value}.yaml").name, key
            if key in ("estimator", "arch", "distill"):
                assert metrics[key] == cfg[key].name
        elif key == "trainer.max_epochs":
            assert cfg.trainer.max_epochs == 1 and metrics["epochs"] <= 1  # the tiny budget
        else:
            assert OmegaConf.select(cfg, key) == value, key
    assert metrics["data"] == "digits" and 0.0 <= metrics["val/acc"] <= 1.0
    # the run is the agent's W&B run: same id, offline files under the run directory
    assert list((run_dir / "wandb").glob("offline-run-*-agentrun1")), list((run_dir / "wandb").iterdir())

"""docs/extending.md, tried: a dummy estimator, architecture, scale, loss term and optimizer,
each registered from inside this test, train one step through the code path of the
``bnn-lab`` command (its command-line checks, then ``training.run.train``); and the import
graph keeps the layering that docs/extending.md documents."""

from __future__ import annotations

import ast
import csv
import re
from pathlib import Path

import pytest
import timm
import torch
from hydra import compose, initialize_config_dir
from timm.models import register_model
from torch import nn

from bnn_lab.cli.overrides import check_composition, check_group_choices
from bnn_lab.cli.train import CONF_DIR
from bnn_lab.estimators import SignEstimator
from bnn_lab.estimators.registry import _REGISTRY as ESTIMATORS
from bnn_lab.layers import SCALES, Scale, register_scale
from bnn_lab.losses import TERMS, LossTerm, register_term
from bnn_lab.optim import OPTIMIZERS, register_optimizer
from bnn_lab.training import run as run_module

REPO = Path(__file__).resolve().parents[1]
calls: dict[str, int] = {}


def count(kind: str) -> None:
    calls[kind] = calls.get(kind, 0) + 1


class DummyEstimator(SignEstimator):
    """Plain straight-through gradient; counts its calls."""

    def surrogate(self, x):
        count("estimator")
        return None, ()


class DummyNet(nn.Module):
    """Full-precision first conv, one conv the surgery makes binary, full-precision classifier."""

    def __init__(self, in_chans: int = 3, num_classes: int = 10, **_timm) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(in_chans, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.act = nn.Hardtanh()
        self.fc = nn.Linear(8, num_classes)
        self.pretrained_cfg = {"first_conv": "conv1", "classifier": "fc"}

    def forward(self, x):
        count("arch")
        x = self.act(self.bn1(self.conv1(x)))
        x = self.act(self.bn2(self.conv2(x)))
        return self.fc(x.mean(dim=(2, 3)))


def dummy_net(pretrained: bool = False, **kwargs) -> DummyNet:
    return DummyNet(**kwargs)


class DummyScale(Scale):
    """Multiplies the output by a constant ``factor``."""

    def __init__(self, layer: nn.Module, factor: float = 1.0) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, out, weight, x=None):
        count("scale")
        return out * self.factor


class DummyTerm(LossTerm):
    """2 + 0 x sum(logits): a constant whose weighted value is easy to check in the log."""

    def __call__(self, inputs):
        count("term")
        assert inputs.logits.shape == (len(inputs.y), 10) and inputs.progress == 0.0
        return 2.0 + 0.0 * inputs.logits.sum()


def dummy_sgd(param_groups, lr: float = 0.1) -> torch.optim.Optimizer:
    class Counting(torch.optim.SGD):
        def step(self, closure=None):
            count("optimizer")
            return super().step(closure)

    return Counting(param_groups, lr=lr)


@pytest.fixture
def registered():
    """Everything registered at run time, removed afterwards."""
    ESTIMATORS.register("dummy_est")(DummyEstimator)
    register_scale("dummy_scale")(DummyScale)
    register_term("dummy_term")(DummyTerm)
    register_optimizer("dummy_opt")(dummy_sgd)
    if not timm.is_model("dummy_net"):
        register_model(dummy_net)
    calls.clear()
    yield
    for registry, name in (
        (ESTIMATORS, "dummy_est"),
        (SCALES, "dummy_scale"),
        (TERMS, "dummy_term"),
        (OPTIMIZERS, "dummy_opt"),
    ):
        registry.unregister(name)


def test_a_dummy_of_each_kind_trains_one_step_through_the_cli_path(registered, tmp_path):
    args = [
        "data=digits",
        "arch=vgg_small",
        "arch.name=dummy_net",
        "estimator=identity",
        "estimator.name=dummy_est",
        "binarize.scale={name:dummy_scale,factor:0.5}",
        "+loss.dummy_term.weight=0.25",
        "optimizer.name=dummy_opt",
        "optimizer.lr=0.05",
        "scheduler=none",
        "logger=csv",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=1",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        "trainer.enable_progress_bar=false",
        "export.packed=false",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    check_group_choices(args, CONF_DIR)  # what `bnn-lab` checks before Hydra starts
    check_composition(args, CONF_DIR)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=args[:-1])
    metrics = run_module.train(cfg, tmp_path / "run")

    assert metrics["global_steps"] == 1 and metrics["estimator"] == "dummy_est"
    assert calls["optimizer"] == 1 and calls["term"] == 1
    assert calls["estimator"] >= 1 and calls["scale"] >= 1 and calls["arch"] >= 1
    rows = list(csv.DictReader(open(tmp_path / "run/csv/metrics.csv")))
    logged = [float(r["train/dummy_term_epoch"]) for r in rows if r.get("train/dummy_term_epoch")]
    assert logged == [0.5]  # weight 0.25 x value 2
    assert metrics["summary"]["binary_params"] == 8 * 8 * 3 * 3  # conv2 alone became binary


def test_unknown_loss_term_and_option_name_the_valid_ones(tmp_path):
    from bnn_lab.errors import ConfigError
    from bnn_lab.losses import build_terms

    with pytest.raises(
        ConfigError, match="unknown loss term 'lipschitz'; valid loss terms: attention, consecutive_kd, kd, lcr, rbd"
    ):
        build_terms({"lipschitz": 1.0})
    with pytest.raises(ConfigError, match="loss term 'kd' takes no option 'temp'; its options: weight, temperature"):
        build_terms({"kd": {"weight": 1.0, "temp": 2.0}})


# -- the layering ---------------------------------------------------------------------------
def documented_layers() -> dict[str, int]:
    """``| n | pkg, pkg |`` rows of the layering table in docs/extending.md: package -> layer."""
    text = (REPO / "docs/extending.md").read_text()
    table = text.split("<!-- layers -->")[1]
    ranks = {}
    for n, names in re.findall(r"^\|\s*(\d+)\s*\|([^|]+)\|", table, flags=re.M):
        for name in names.split(","):
            ranks[name.strip().strip("`")] = int(n)
    return ranks


def imports_of(path: Path, package: tuple[str, ...]) -> set[str]:
    """Top-level bnn_lab packages that ``path`` imports, at any depth (inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                target = list(package[: len(package) - node.level + 1]) + (
                    node.module.split(".") if node.module else []
                )
                targets = [target] if node.module else [target + [a.name] for a in node.names]
            else:
                targets = [node.module.split(".")]
        elif isinstance(node, ast.Import):
            targets = [a.name.split(".") for a in node.names]
        else:
            continue
        found |= {t[1] for t in targets if len(t) > 1 and t[0] == "bnn_lab"}
    return found


def test_no_package_imports_from_a_layer_above_its_own():
    ranks = documented_layers()
    root = REPO / "bnn_lab"
    upward, unplaced = [], set()
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        package = parts[:-1]
        own = parts[1] if len(parts) > 2 else parts[1]
        if own == "__init__":
            continue
        for target in imports_of(path, package) - {own}:
            if own not in ranks or target not in ranks:
                unplaced |= {n for n in (own, target) if n not in ranks}
            elif ranks[target] >= ranks[own]:
                upward.append(
                    f"{path.relative_to(root.parent)} imports {target} (layer {ranks[target]} >= {ranks[own]})"
                )
    assert not unplaced, f"place these in the layering table of docs/extending.md: {sorted(unplaced)}"
    assert not upward, upward
    assert ranks["assembly"] < min(ranks[p] for p in ("training", "export", "bench", "cli"))


def module_imports() -> dict[str, set[str]]:
    """bnn_lab module -> the bnn_lab modules it imports, at any depth (inside functions too); a
    name imported from a package is its submodule when one has that name, else the package."""
    root = REPO / "bnn_lab"
    modules = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        package = parts[:-1]
        if parts[-1] == "__init__":
            parts = package
        modules[".".join(parts)] = (path, package)

    def nearest(name: str) -> str:
        while name not in modules:
            name = name.rpartition(".")[0]
        return name

    graph = {}
    for name, (path, package) in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                target = ".".join(base + (node.module.split(".") if node.module else []))
                if target.split(".")[0] == "bnn_lab":
                    found |= {
                        f"{target}.{a.name}" if f"{target}.{a.name}" in modules else nearest(target) for a in node.names
                    }
            elif isinstance(node, ast.Import):
                found |= {nearest(a.name) for a in node.names if a.name.split(".")[0] == "bnn_lab"}
        graph[name] = found - {name}
    return graph


def test_no_import_cycle_between_modules():
    graph = module_imports()
    assert graph["bnn_lab.export.graph"] >= {"bnn_lab.export.residual_fusion"}  # the walk sees imports
    cycles, done = [], set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycles.append(path[path.index(module) :] + [module])
            return
        if module in done:
            return
        for target in sorted(graph[module]):
            visit(target, path + [module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    assert not cycles, [" -> ".join(c) for c in cycles[:5]]

"""The Docker image, built for real: docker/check.sh builds docker/Dockerfile with docker or
podman (its base made from Debian's packages where no registry answers), then trains one
digits epoch and evaluates the packed model inside the image with the network off. What the
build proves (the install steps, the entry point, the build context) is not checked again by
reading the Dockerfile; what the offline build cannot exercise (the registry base that
clusters use) is."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from required_tools import unavailable

REPO = Path(__file__).resolve().parents[1]
CHECK = REPO / "docker" / "check.sh"


def test_base_is_a_build_argument_defaulting_to_the_registry_python():
    """Clusters build with the default base, the offline check with another: FROM must take BASE,
    and the default's Python must satisfy requires-python (the offline build cannot show either)."""
    lines = [
        line.strip()
        for line in (REPO / "docker" / "Dockerfile").read_text().splitlines()
        if line.strip()[:1] not in "#"
    ]
    default = re.fullmatch(r"ARG BASE=python:(\d+)\.(\d+)-slim", lines[0])
    assert default, lines[0]
    assert lines[1] == "FROM ${BASE}", lines[1]
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = re.fullmatch(r">=(\d+)\.(\d+)", requires)
    assert minimum, requires
    assert tuple(map(int, default.groups())) >= tuple(map(int, minimum.groups())), (lines[0], requires)


def test_docker_readme_covers_gpu_multi_gpu_slurm_and_the_offline_base():
    text = (REPO / "docker" / "README.md").read_text()
    for needle in (
        "docker build -f docker/Dockerfile -t bnn-lab .",
        "--gpus",
        "trainer=ddp",
        "apptainer build",
        "--nv",
        "docker save",
        "podman save",
        "srun",
        "make image-check",
        "debootstrap",
    ):
        assert needle in text, needle


def _inside_train_args() -> list[str]:
    """The overrides docker/check_inside.py trains with in the image (without its run dir)."""
    spec = importlib.util.spec_from_file_location("check_inside", REPO / "docker" / "check_inside.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return [arg for arg in module.TRAIN[1:] if not arg.startswith("hydra.run.dir=")]


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_image_builds_trains_and_evaluates_its_packed_model(tmp_path):
    probe = subprocess.run(["bash", str(CHECK), "--can-build"], capture_output=True, text=True, timeout=300)
    if probe.returncode == 3:
        unavailable(probe.stderr.strip() or probe.stdout.strip())
    assert probe.returncode == 0, probe.stdout + probe.stderr
    done = subprocess.run(["bash", str(CHECK)], capture_output=True, text=True, timeout=3500)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    raw = dict(re.findall(r"^check: (\w+) (.+)$", done.stdout, flags=re.M))
    # the image bundles a CUDA build of torch (what the clusters run it for)
    assert re.fullmatch(r"\S+ \(CUDA \d+\.\d+\)", raw["torch"]), raw["torch"]
    assert raw["python"].startswith("3.11.")
    float_acc, run_packed, evaluated = (float(raw[k]) for k in ("test_acc", "run_packed_test_acc", "packed_test_acc"))
    # the packed kernels in the image agree with the float binary model they were packed from
    # (digits' test split has 359 images: at most one prediction may flip at a tie), and
    # bnn-lab-eval reproduces the run's own packed evaluation exactly
    assert abs(float_acc - run_packed) <= 1 / 359 + 1e-9, (float_acc, run_packed)
    assert evaluated == run_packed
    # the image trains as this checkout's own install does: the same command, seed and data
    # here (exactly equal where both resolved the same library versions; a few images apart
    # at most where a newer release of an unpinned dependency changed a rounding)
    host = subprocess.run(
        [sys.executable, "-m", "bnn_lab.cli.train", *_inside_train_args(), f"hydra.run.dir={tmp_path / 'host'}"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert host.returncode == 0, host.stderr[-3000:]
    host_acc = json.loads((tmp_path / "host" / "metrics.json").read_text())["test/acc"]
    assert abs(float_acc - host_acc) <= 0.03, (float_acc, host_acc)
    assert re.search(r"^check: image \S+: built in \d+ s, [\d.]+ GB", done.stdout, flags=re.M), done.stdout[-2000:]

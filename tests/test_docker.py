"""docker/Dockerfile and .dockerignore, checked without a Docker engine: the Dockerfile
parses (dockerfile-parse), installs through the Makefile target the README uses, ends in the
``bnn-lab`` console script, and the build context keeps the host's virtualenv and outputs out."""

from __future__ import annotations

import importlib
import json
import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "docker" / "Dockerfile"
INSTRUCTIONS = {
    "FROM",
    "RUN",
    "CMD",
    "LABEL",
    "EXPOSE",
    "ENV",
    "ADD",
    "COPY",
    "ENTRYPOINT",
    "VOLUME",
    "USER",
    "WORKDIR",
    "ARG",
    "ONBUILD",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "SHELL",
    "COMMENT",
}


@pytest.fixture(scope="module")
def dockerfile():
    from dockerfile_parse import DockerfileParser  # dev extra; imported here so that only these tests fail without it

    parser = DockerfileParser(path=str(DOCKERFILE), cache_content=True)
    assert parser.structure, "empty Dockerfile"
    return parser


def _steps(parser, instruction: str) -> list[str]:
    return [s["value"] for s in parser.structure if s["instruction"] == instruction]


def _dockerignore() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _pattern_regex(pattern: str) -> str:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return out


def ignored(rel: str, patterns: list[str]) -> bool:
    """Docker's rule: patterns are relative to the context root, a path is out when it or one
    of its parent folders matches, the last matching pattern wins (``!`` re-includes)."""
    parts = rel.strip("/").split("/")
    out = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = _pattern_regex(pattern.lstrip("!").strip("/"))
        if any(re.fullmatch(regex, "/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            out = not negate
    return out


def test_dockerfile_parses(dockerfile):
    assert {s["instruction"] for s in dockerfile.structure} <= INSTRUCTIONS
    first = next(s for s in dockerfile.structure if s["instruction"] not in ("COMMENT", "ARG"))
    assert first["instruction"] == "FROM"
    # the base's Python satisfies requires-python (3.11)
    base = dockerfile.baseimage
    assert re.fullmatch(r"python:3\.(1[1-9])(-slim)?(-\w+)?", base), base
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11"


def test_image_installs_the_way_the_readme_does(dockerfile):
    runs = " && ".join(_steps(dockerfile, "RUN"))
    assert re.search(r"(^|&& ?)make venv\b", runs), "the image installs through `make venv`"
    # what `make venv` runs: a virtualenv, then pip install -e '.[dev]' (dry run of the real Makefile)
    dry = subprocess.run(
        ["make", "-n", "-C", str(REPO), "venv", "VENV=/nonexistent/venv"], capture_output=True, text=True, timeout=60
    )
    assert dry.returncode == 0, dry.stderr
    assert "-m pip install --quiet -e '.[dev]'" in dry.stdout
    # the venv the Makefile fills is the one on PATH in the image
    env = dockerfile.envs
    assert env.get("VIRTUAL_ENV") == "/app/.venv" and env["PATH"].startswith("/app/.venv/bin:")
    assert _steps(dockerfile, "WORKDIR")[-1] == "/app"
    # the CUDA build of torch: PyPI's default wheel, not the CPU-only index
    assert "whl/cpu" not in DOCKERFILE.read_text()


def test_entrypoint_is_the_console_script(dockerfile):
    entry = json.loads(_steps(dockerfile, "ENTRYPOINT")[-1])  # exec form: signals reach bnn-lab
    assert entry == ["bnn-lab"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module, func = scripts[entry[0]].split(":")
    assert callable(getattr(importlib.import_module(module), func))


def test_copy_sources_exist_and_reach_the_build(dockerfile):
    patterns = _dockerignore()
    for value in _steps(dockerfile, "COPY"):
        args = [a for a in shlex.split(value) if not a.startswith("--")]
        for src in args[:-1]:
            if src == ".":
                continue
            assert (REPO / src).exists(), src
            assert not ignored(src, patterns), f"{src} is copied but .dockerignore leaves it out"


@pytest.mark.parametrize(
    "path,out",
    [
        (".venv/bin/python", True),
        (".git/HEAD", True),
        ("outputs/2025-01-01/x/metrics.json", True),
        ("multirun/a/b", True),
        ("wandb/offline-run-x", True),
        ("bnn_lab/__pycache__/x.pyc", True),
        ("bnn_lab/training/run.py", False),
        ("bnn_lab/data/__init__.py", False),
        ("conf/config.yaml", False),
        ("pyproject.toml", False),
        ("Makefile", False),
        ("README.md", False),
        ("sweeps/lr_bayes.yaml", False),
        ("docker/Dockerfile", False),
    ],
)
def test_dockerignore(path, out):
    assert ignored(path, _dockerignore()) is out


def test_docker_readme_covers_gpu_multi_gpu_and_apptainer():
    text = (REPO / "docker" / "README.md").read_text()
    for needle in (
        "docker build -f docker/Dockerfile -t bnn-lab .",
        "--gpus",
        "trainer=ddp",
        "apptainer build",
        "--nv",
        "docker-daemon://bnn-lab",
    ):
        assert needle in text, needle

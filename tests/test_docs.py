"""The docs cannot drift from the code: every ``bnn-lab ...`` command shown in README.md and
docs/*.md composes (configuration only, no training), and every Python name they show imports."""

from __future__ import annotations

import ast
import importlib
import os
import re
import shlex
from pathlib import Path

import pytest

from bnn_lab.cli.overrides import check_composition, check_group_choices
from bnn_lab.cli.train import CONF_DIR
from bnn_lab.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
INLINE = re.compile(r"`(bnn-lab [^`]+)`")
DOTTED = re.compile(r"\bbnn_lab(?:\.\w+)+")
# an argument whose value was a placeholder: emptied (hydra.run.dir=<dir>), a shell variable, a
# loop letter (seed=S), an ellipsis
PLACEHOLDER = re.compile(r"=$|\$|=[A-Z]$|\.\.\.")
# commands shown on purpose as mistakes, and the line they end with
MISTAKES = {"estimator=nope": "unknown estimator option 'nope'"}


def shell_lines(text: str) -> list[str]:
    """Shell commands of fenced blocks (continuations joined, comments dropped) and inline code."""
    lines = []
    for lang, body in FENCE.findall(text):
        if lang in ("", "bash", "sh", "console"):
            lines += body.replace("\\\n", " ").splitlines()
    return lines + INLINE.findall(text)


def added_by_page(text: str) -> set[str]:
    """Names that a page's own code registers (docs/extending.md's example loss term): its
    commands use them as a reader would after adding those files."""
    return set(re.findall(r"@register\w*\(\"(\w+)\"\)", text))


def commands() -> list[tuple[str, str]]:
    """(page, bnn-lab arguments) for every bnn-lab command shown, placeholders dropped."""
    found = []
    for page in PAGES:
        added = added_by_page(page.read_text())
        for line in shell_lines(page.read_text()):
            if any(name in line for name in added):
                continue
            line = line.split(" #")[0].split(";")[0].strip().removeprefix("$ ")
            line = os.path.expandvars(re.sub(r"<[^>]*>", "", line))  # <run dir>: placeholders; $HOME
            words = line.split()
            while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # OMP_NUM_THREADS=1 bnn-lab ...
                words.pop(0)
            if not words or words[0] != "bnn-lab":
                continue
            try:
                args = shlex.split(" ".join(words[1:]).rstrip("&").strip())
            except ValueError:
                args = words[1:]
            args = [a for a in args if not PLACEHOLDER.search(a) and a not in ("&", "|", "...")]
            found.append((page.name, " ".join(args)))
    return found


COMMANDS = commands()


def test_the_pages_show_commands():
    assert len(COMMANDS) >= 40 and any(page == "README.md" for page, _ in COMMANDS)


@pytest.mark.parametrize("page,args", COMMANDS, ids=[f"{p}:{a[:60]}" for p, a in COMMANDS])
def test_every_command_shown_composes(page, args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the composition probes the run directory it would write
    argv = shlex.split(args)
    if argv in ([], ["--help"]) or argv[0].startswith("--cfg"):
        return
    argv = [a for a in argv if a not in ("--cfg", "job")]
    if args in MISTAKES:
        with pytest.raises(ConfigError, match=MISTAKES[args]):
            check_group_choices(argv, CONF_DIR)
        return
    check_group_choices(argv, CONF_DIR)
    check_composition(argv, CONF_DIR)


def python_names() -> list[tuple[str, str]]:
    """(page, module:name) for every import in a Python block and every bnn_lab.x.y in the text."""
    found = set()
    for page in PAGES:
        text = page.read_text()
        for lang, body in FENCE.findall(text):
            if lang != "python":
                continue
            home = re.match(r"# (bnn_lab/[\w/]+)/\w+\.py", body)  # the file the block is, inside the package
            for node in ast.walk(ast.parse(body)):
                if isinstance(node, ast.ImportFrom):
                    module = node.module or ""
                    if node.level:
                        assert home, f"{page.name}: a relative import in a block that does not say its file"
                        parts = home.group(1).split("/")
                        module = ".".join(parts[: len(parts) - node.level + 1] + ([module] if module else []))
                    found |= {(page.name, f"{module}:{a.name}") for a in node.names}
                elif isinstance(node, ast.Import):
                    found |= {(page.name, f"{a.name}:") for a in node.names}
        for dotted in DOTTED.findall(text):
            module, _, rest = dotted.partition(".")[2].partition(".")
            found.add((page.name, f"bnn_lab.{module}:{rest}"))
    return sorted(found)


@pytest.mark.parametrize("page,name", python_names())
def test_every_python_name_shown_exists(page, name):
    module, _, attrs = name.partition(":")
    obj = importlib.import_module(module)
    for attr in filter(None, attrs.split(".")):
        assert hasattr(obj, attr), f"{page}: {module}.{attrs} does not exist ({attr} missing)"
        obj = getattr(obj, attr)

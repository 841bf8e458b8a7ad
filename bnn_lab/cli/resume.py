"""``bnn-lab resume=<run dir>``: continue a run with the overrides it was started with.

Hydra picks a new run directory (``outputs/<date>/<time>_...``) for every command, so
``resume=true`` alone would look for a checkpoint in a folder that does not exist yet; it needs
``hydra.run.dir=<the run's folder>`` and the run's own overrides. ``resume=<run dir>`` writes
that command line: the overrides saved in ``<run dir>/.hydra/overrides.yaml``, then any given
here (they win, e.g. ``trainer.max_epochs=20`` to train longer), then ``resume=true
hydra.run.dir=<run dir>``.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from ..errors import ConfigError

_BOOLEAN_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "none", "0", "1"}
_PLAIN_PATH = re.compile(r"^[\w./-]+$")


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _quoted(path: Path) -> str:
    text = str(path)
    if _PLAIN_PATH.match(text):
        return text
    if "'" in text:
        raise ConfigError(f"cannot pass the run directory {text!r} to Hydra (it contains a quote); rename it")
    return f"'{text}'"


def expand_resume(args: list[str]) -> list[str]:
    """``args`` with ``resume=<run dir>`` replaced by the run's overrides, ``resume=true`` and
    ``hydra.run.dir``; unchanged when ``resume`` is absent or true/false."""
    given = [a for a in args if a.startswith("resume=")]
    if not given:
        return args
    value = given[-1].split("=", 1)[1]
    if value.strip().lower() in _BOOLEAN_WORDS:
        return args
    run_dir = Path(value).expanduser().resolve()
    if "-m" in args or "--multirun" in args:
        raise ConfigError(
            "resume=<run dir> continues one run; continue a multirun with resume=true and its hydra.sweep.dir"
        )
    saved_file = run_dir / ".hydra" / "overrides.yaml"
    if not saved_file.is_file():
        raise ConfigError(
            f"resume={value}: {run_dir} is not a bnn-lab run directory (no .hydra/overrides.yaml); "
            "give the folder that holds config.yaml and checkpoints/"
        )
    rest = [a for a in args if not a.startswith("resume=")]
    for a in rest:
        if a.startswith("hydra.run.dir=") and Path(a.split("=", 1)[1].strip("'\"")).expanduser().resolve() != run_dir:
            raise ConfigError(f"resume={value} and {a} name two run directories; give one")
    rest = [a for a in rest if not a.startswith("hydra.run.dir=")]
    saved = [str(o) for o in (yaml.safe_load(saved_file.read_text()) or [])]
    replaced = {_key(a) for a in rest if "=" in a} | {"resume", "hydra.run.dir"}
    kept = [o for o in saved if _key(o) not in replaced]
    return kept + rest + ["resume=true", f"hydra.run.dir={_quoted(run_dir)}"]

"""Checks command-line group choices before Hydra runs, so that an unknown option fails
with one line naming the group and the valid options."""
from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError


def group_options(conf_dir: Path, group: str) -> list[str]:
    folder = conf_dir / group
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def check_group_choices(args: list[str], conf_dir: Path) -> None:
    """Raise ConfigError for ``group=option`` overrides whose option has no file."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    candidates = [a for a in args if "=" in a and not a.startswith("-")]
    if not candidates:
        return
    try:
        overrides = OverridesParser.create().parse_overrides(candidates)
    except Exception:
        return  # Hydra reports syntax errors itself
    for ov in overrides:
        group = ov.key_or_group
        if ov.is_delete() or "." in group or ov.package or not (conf_dir / group).is_dir():
            continue
        if ov.is_sweep_override():
            values = [str(v) for v in ov.sweep_string_iterator()]
        else:
            value = ov.value()
            if value is None:
                continue
            values = [str(value)]
        valid = group_options(conf_dir, group)
        for v in values:
            if v not in valid:
                raise ConfigError(f"unknown {group} option {v!r}; valid {group} options: {', '.join(valid)}")

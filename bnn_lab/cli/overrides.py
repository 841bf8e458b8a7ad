"""Checks the command line before Hydra runs, so that mistakes fail with one line:
unknown group options (listing the valid ones), unknown keys, values of the wrong type,
mandatory values left unset, and a run directory that holds another run."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ..assembly.old_spellings import refuse_old_spelling
from ..errors import ConfigError
from ..training.safety.run_dir import check_run_dir, is_other_rank
from ..training.safety.run_lock import refuse_if_live

# Hydra flags that take no value; with any other flag the command line is left to Hydra
_PLAIN_FLAGS = {"-m", "--multirun"}


def group_options(conf_dir: Path, group: str) -> list[str]:
    folder = conf_dir / group
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def _parse(args: list[str]):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    candidates = [a for a in args if "=" in a and not a.startswith("-")]
    return OverridesParser.create().parse_overrides(candidates) if candidates else []


def check_group_choices(args: list[str], conf_dir: Path) -> None:
    """Raise ConfigError for ``group=option`` overrides whose option has no file."""
    try:
        overrides = _parse(args)
    except Exception:
        return  # Hydra reports syntax errors itself
    for ov in overrides:
        group = ov.key_or_group
        refuse_old_spelling(group)  # fp=true, distill.kd=0...: one line naming the new spelling
        if ov.is_delete() or "." in group or ov.package or not (conf_dir / group).is_dir():
            continue
        if group.startswith("hydra/"):  # hydra/launcher, hydra/sweeper: plugins add options without a file here
            continue
        if ov.is_sweep_override():
            values = [str(v) for v in ov.sweep_string_iterator()]
        else:
            value = ov.value()
            if value is None:
                continue
            values = [str(v) for v in value] if isinstance(value, list) else [str(value)]  # loss=[kd,x]
        valid = group_options(conf_dir, group)
        for v in values:
            if v not in valid:
                raise ConfigError(f"unknown {group} option {v!r}; valid {group} options: {', '.join(valid)}")


def _first_choice(ov) -> str:
    """The override with a sweep replaced by its first value (to compose one config)."""
    if not ov.is_sweep_override():
        return ov.input_line
    first = next(iter(ov.sweep_string_iterator()))
    prefix = ov.input_line[: len(ov.input_line) - len(ov.input_line.lstrip("+~"))]
    return f"{prefix}{ov.key_or_group}={first}"


def _same_kind(default, value) -> bool:
    if default is None or value is None or isinstance(default, (DictConfig, dict, list)):
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return True


def check_composition(args: list[str], conf_dir: Path) -> None:
    """Compose the configuration the way Hydra will and report mistakes in one line, the run
    directory's included (before Hydra writes its files there: a new run would overwrite
    another); a command line with other flags is left to Hydra."""
    if any(a.startswith("-") and a not in _PLAIN_FLAGS for a in args):
        return
    from hydra import compose, initialize_config_dir

    try:
        overrides = _parse(args)
    except Exception as exc:
        raise ConfigError(f"cannot parse the overrides: {str(exc).splitlines()[0]}") from exc
    lines = [_first_choice(ov) for ov in overrides if not ov.key_or_group.startswith("hydra")]
    groups = [line for ov, line in zip(overrides, lines) if "." not in ov.key_or_group]
    hydra_lines = [ov.input_line for ov in overrides if ov.key_or_group.startswith(("hydra.", "hydra/"))]
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        try:
            cfg = compose(config_name="config", overrides=lines + hydra_lines, return_hydra_config=True)
        except Exception as exc:
            msg = " ".join(str(exc).split("\n")[:2])
            raise ConfigError(msg) from exc
        base = compose(config_name="config", overrides=groups)
    multirun = any(a in _PLAIN_FLAGS for a in args)
    run_dir = _check_writable(cfg, multirun)
    for ov in overrides:
        key = ov.key_or_group
        if "." not in key or key.startswith("hydra") or ov.is_delete():
            continue
        default = OmegaConf.select(base, key, default=None)
        value = OmegaConf.select(cfg, key, default=None)
        if not _same_kind(default, value):
            kind = {"int": "an integer", "float": "a number", "bool": "true or false"}[type(default).__name__]
            raise ConfigError(f"{key} expects {kind} (like {default!r}), got {value!r}")
    for key in _missing_keys(cfg):
        raise ConfigError(f"{key} must be set (e.g. {key}=...)")
    if run_dir is not None and not multirun and not is_other_rank():
        refuse_if_live(run_dir)  # the run takes the lock itself; this says so before Hydra starts
        check_run_dir(run_dir, cfg, warn=False)  # the run warns about changed values itself


def _check_writable(cfg: DictConfig, multirun: bool) -> Path | None:
    """The run (or sweep) directory, made and probed for writing; None where Hydra decides."""
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    try:
        target = Path(str(OmegaConf.select(cfg, key))).expanduser().absolute()
    except Exception:
        return None  # left to Hydra (e.g. an interpolation of a missing value, reported below)
    try:  # Hydra creates it anyway; creating it here turns a failure into one clear line
        target.mkdir(parents=True, exist_ok=True)
        probe = target / ".bnn-lab-write-test"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"cannot write the run directory {target} ({exc.strerror}); set {key}=<a writable folder>"
        ) from exc
    return target


def _missing_keys(cfg: DictConfig, prefix: str = "") -> list[str]:
    missing = []
    for key in cfg:
        if key == "hydra" and not prefix:
            continue
        full = f"{prefix}{key}"
        if OmegaConf.is_missing(cfg, key):
            missing.append(full)
        else:
            node = cfg._get_node(key)
            if isinstance(node, DictConfig):
                missing += _missing_keys(node, full + ".")
    return missing

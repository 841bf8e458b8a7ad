"""A trained network from a bnn-lab checkpoint file or a finished run directory, built from the
configuration its run wrote (``config.yaml``): any architecture, in the precision it was trained
in. Provided to the loss terms that load networks (``bnn_lab.losses.networks``)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf
from torch import nn

from ..errors import UserError
from ..files import load_checkpoint, read_json
from ..losses.networks import provide_network_loader
from .model import build_model
from .precision import stored_precision


def checkpoint_file(path: str | Path) -> Path:
    """``path`` itself if it is a file; for a finished run directory, the checkpoint its
    metrics.json names (the one the run was tested with)."""
    path = Path(path).expanduser()
    if path.is_file():
        return path
    metrics = path / "metrics.json"
    if not metrics.is_file():
        raise UserError(f"{path} is neither a checkpoint file nor a finished run directory (no metrics.json)")
    named = read_json(metrics, "metrics file").get("best_checkpoint")
    if not named or not Path(named).is_file():
        raise UserError(f"the run {path} names no existing checkpoint in metrics.json; give the checkpoint file")
    return Path(named)


def run_config(file: Path) -> Path:
    """The config.yaml of the run that wrote ``file`` (``<run>/checkpoints/x.ckpt`` or
    ``<run>/stages/<n>_<name>/checkpoints/x.ckpt``)."""
    for folder in list(file.parents)[:4]:
        if (folder / "config.yaml").is_file():
            return folder / "config.yaml"
    raise UserError(f"no config.yaml of the run that wrote {file}: cannot tell its architecture")


def load_trained(path: str | Path, img_size: int) -> nn.Module:
    """The network of ``path`` for ``img_size`` inputs, with its trained weights, in eval mode."""
    file = checkpoint_file(path)
    cfg = OmegaConf.load(run_config(file))
    ckpt = load_checkpoint(file, what="trained network")
    meta = ckpt.get("bnn_lab", {}) if isinstance(ckpt, dict) else {}
    if "num_classes" not in meta:
        raise UserError(f"{file} is not a bnn-lab checkpoint (no bnn_lab metadata)")
    model, _ = build_model(
        cfg, int(meta["in_chans"]), int(meta["num_classes"]), img_size, precision=stored_precision(meta)
    )
    state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise UserError(f"{file} does not fit the {cfg.arch.name} its config.yaml describes: {exc}") from exc
    return model.eval()


provide_network_loader(load_trained)

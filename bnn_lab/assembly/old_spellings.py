"""Keys of earlier versions: on the command line each is refused in one line that names what to
write instead; in a configuration that an earlier version saved, the precision ones are read
(:func:`bnn_lab.assembly.precision.saved_precision`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError

PRECISION_SPELLINGS = {"fp": "precision=fp", "binarize.policy.weights_only": "precision=bwn"}
LOSS_SPELLINGS = {
    "distill.ce": "loss.ce=<weight>",
    "distill.kd": "loss.kd.weight=<weight> (0: the teacher without the kd term)",
    "distill.attention": "loss.attention.weight=<weight>",
    "distill.temperature": "loss.kd.temperature=<T>",
    "distill.layers": "loss.attention.layers=[...]",
}
WHY = {
    **dict.fromkeys(PRECISION_SPELLINGS, "the one precision key"),
    **dict.fromkeys(
        LOSS_SPELLINGS, "what a run optimizes is its loss terms; distill says where the teacher comes from"
    ),
}


def refuse_old_spelling(key: str) -> None:
    """One line naming the new spelling for a key of earlier versions (``fp``, ``distill.kd``...)."""
    key = key.lstrip("+~")
    new = PRECISION_SPELLINGS.get(key) or LOSS_SPELLINGS.get(key)
    if new:
        raise ConfigError(f"{key} is no longer a key: write {new} ({WHY[key]})")


def lookup(conf: Mapping[str, Any], dotted: str) -> Any:
    """The value at ``dotted`` in nested mappings, None where a part is missing."""
    node: Any = conf
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


def refuse_old_keys(cfg: Mapping[str, Any]) -> None:
    """The same refusal for a composed configuration: a YAML file (a preset of one's own) that
    still sets an old key would otherwise add it silently, and nothing would read it."""
    for key in (*PRECISION_SPELLINGS, *LOSS_SPELLINGS):
        if lookup(cfg, key) is not None:
            refuse_old_spelling(key)

"""What the surgery pass keeps in full precision, and which activations it swaps."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from torch import nn

from ..errors import ConfigError
from .activations import ACTIVATIONS


@dataclasses.dataclass
class Policy:
    """Surgery policy (config keys under ``binarize.policy``).

    keep_first: the first conv stays full precision (BinaryNet, XNOR-Net, Bi-Real...).
    keep_last: the classifier stays full precision.
    keep_downsample: 1x1 convs in shortcuts/transitions stay full precision.
    keep: module names or regular expressions (full match) to keep in full precision;
        each must match at least one Conv2d/Linear.
    activation: what replaces the ReLUs (``None`` leaves them): relu | prelu | rprelu |
        identity | hardtanh. ReLU before sign() would make every binary input +1.
    """

    keep_first: bool = True
    keep_last: bool = True
    keep_downsample: bool = False
    keep: tuple[str, ...] = ()
    activation: str | None = None

    @classmethod
    def from_any(cls, policy: "Policy | Mapping[str, Any] | None") -> "Policy":
        if policy is None:
            return cls()
        if isinstance(policy, Policy):
            return policy
        valid = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(policy) - valid)
        if unknown:
            raise ConfigError(
                f"unknown binarize.policy key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(valid))}"
            )
        values = dict(policy)
        keep = values.get("keep") or ()
        values["keep"] = (keep,) if isinstance(keep, str) else tuple(keep)
        act = values.get("activation")
        if act is not None:
            ACTIVATIONS.get(act)  # an unknown name lists the valid ones
        return cls(**values)


def is_downsample(name: str, module: nn.Module) -> bool:
    """A 1x1 conv in a shortcut / transition, or any strided 1x1 conv."""
    if not isinstance(module, nn.Conv2d) or module.kernel_size != (1, 1):
        return False
    words = ("downsample", "shortcut", "transition", "skip")
    return any(w in name.lower() for w in words) or max(module.stride) > 1

"""Loss terms from the configuration: ``{name: weight}`` or ``{name: {weight: w, <options>}}``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError
from .base import LossTerm, NetworkLoader
from .registry import TERMS


def build_term(name: str, spec: float | Mapping[str, Any]) -> LossTerm:
    """The term ``name``; ``spec`` is its weight or its options (with ``weight``)."""
    if isinstance(spec, Mapping):
        options = dict(spec)
    elif isinstance(spec, (int, float)) and not isinstance(spec, bool):
        options = {"weight": spec}
    else:
        raise ConfigError(f"loss term {name!r} wants a weight or a mapping of options, got {spec!r}")
    return TERMS.build(name, **options)


def build_terms(
    specs: Mapping[str, float | Mapping[str, Any]], network_loader: NetworkLoader | None = None
) -> list[LossTerm]:
    """Every term of ``specs`` in its order, except those of weight 0 (they add nothing).
    ``network_loader``: what the terms that load trained networks (``loads_networks``) load
    them with."""
    terms = [build_term(name, spec) for name, spec in specs.items()]
    for term in terms:
        if term.loads_networks:
            if network_loader is None:
                raise ConfigError(f"loss term {term.name!r} loads trained networks: build it with a network_loader")
            term.network_loader = network_loader
    return [t for t in terms if t.weight != 0]


def merge_specs(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` on top: a term in both keeps ``base``'s options that ``extra``
    does not set (``extra``'s bare number sets the weight)."""
    merged = dict(base)
    for name, spec in extra.items():
        if name in merged and isinstance(merged[name], Mapping):
            merged[name] = {**merged[name], **(spec if isinstance(spec, Mapping) else {"weight": spec})}
        else:
            merged[name] = spec
    return merged

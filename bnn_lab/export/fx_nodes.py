"""Small questions the inference-graph rewrites ask of a torch.fx graph."""

from __future__ import annotations

from collections import Counter

import torch.fx as fx


def single_user(node: fx.Node) -> fx.Node | None:
    """The one node that reads ``node``'s value, or None when none or several do."""
    return next(iter(node.users)) if len(node.users) == 1 else None


def module_calls(gm: fx.GraphModule) -> Counter:
    """How many nodes call each submodule (by target name): a module called once may be rewritten
    in place of its call."""
    return Counter(node.target for node in gm.graph.nodes if node.op == "call_module")


__all__ = ["module_calls", "single_user"]

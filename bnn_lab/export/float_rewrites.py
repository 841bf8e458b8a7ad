"""Rewrites of the float parts of a traced inference graph (``bnn_lab.export.graph``).

What stays float in a binary network (the stem, the downsampling shortcuts, the residual stream)
is memory-bound at inference: every module reads and writes a whole activation. Three rewrites
remove passes without changing what is computed beyond float rounding:

* a BatchNorm (eval) right after a float ``nn.Conv2d`` and used by nothing else is folded into the
  convolution's weight and bias (``torch.nn.utils.fusion.fuse_conv_bn_eval``):
  ``W' = W g, b' = (b - mean) g + beta`` with ``g = gamma / sqrt(var + eps)``;
* a residual addition ``a + b`` whose left operand is a fresh tensor (the output of a convolution,
  BatchNorm or another addition) used by nothing else is done in place, ``a.add_(b)``;
* a clamping activation (Hardtanh, ReLU, ReLU6, LeakyReLU) whose input is such a fresh, unshared
  tensor runs in place;
* Identity and Dropout modules (identities at inference) leave the graph;
* a max-pooling after a clamping activation runs before it: ``maxpool(clamp(x)) = clamp(maxpool(x))``
  exactly (a non-decreasing function commutes with max; the -inf padding is never the maximum), and
  the activation then reads a tensor a quarter of the size (3x3 stride-2 stem pooling).
"""

from __future__ import annotations

import operator

import torch
import torch.fx as fx
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .fx_nodes import module_calls, single_user
from .packed_layers import PackedBinaryConv2d, PackedBinaryLinear

INPLACE_ACTIVATIONS = (nn.Hardtanh, nn.ReLU, nn.ReLU6, nn.LeakyReLU)
_FRESH_MODULES = (PackedBinaryConv2d, PackedBinaryLinear, nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.MaxPool2d)
ADDS = (operator.add, torch.add)


def add_into(a: torch.Tensor, b):
    """``a + b`` written into ``a`` when the sum has a's shape and dtype (else a new tensor)."""
    if isinstance(b, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype:
        return a.add_(b)
    return a + b


def _fresh(node, modules: dict) -> bool:
    """The node's value is a new tensor that only its single user reads (safe to overwrite)."""
    if not isinstance(node, fx.Node) or len(node.users) != 1:
        return False
    if node.op == "call_module":
        return isinstance(modules[node.target], _FRESH_MODULES)
    return node.op == "call_function" and (node.target in ADDS or node.target is add_into)


def fold_float_batchnorms(gm: fx.GraphModule) -> int:
    """Fold every eval BatchNorm2d that only follows a float ``nn.Conv2d`` into it; returns the count."""
    modules, calls, folded = dict(gm.named_modules()), module_calls(gm), 0
    for node in list(gm.graph.nodes):
        user = single_user(node)
        if node.op != "call_module" or type(modules[node.target]) is not nn.Conv2d or user is None:
            continue
        bn = modules.get(user.target) if user.op == "call_module" else None
        if (
            not isinstance(bn, nn.BatchNorm2d)
            or not bn.track_running_stats
            or bn.running_mean is None
            or user.args != (node,)
            or calls[node.target] != 1
        ):
            continue
        gm.add_submodule(node.target, fuse_conv_bn_eval(modules[node.target].eval(), bn.eval()))
        user.replace_all_uses_with(node)
        gm.graph.erase_node(user)
        folded += 1
    return folded


def drop_identities(gm: fx.GraphModule) -> int:
    """Remove the calls of Identity and Dropout modules (their output is their input at inference)."""
    modules, dropped = dict(gm.named_modules()), 0
    for node in list(gm.graph.nodes):
        if (
            node.op == "call_module"
            and isinstance(modules[node.target], (nn.Identity, nn.Dropout))
            and len(node.args) == 1
            and not node.kwargs
            and isinstance(node.args[0], fx.Node)
        ):
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
            dropped += 1
    return dropped


def pool_before_activation(gm: fx.GraphModule) -> int:
    """Swap ``maxpool(act(x))`` into ``act(maxpool(x))`` for clamping activations read only by the pooling."""
    modules, calls, swapped = dict(gm.named_modules()), module_calls(gm), 0
    for node in list(gm.graph.nodes):
        pool = single_user(node)
        if (
            node.op != "call_module"
            or not isinstance(modules[node.target], INPLACE_ACTIVATIONS)
            or isinstance(modules[node.target], nn.LeakyReLU)
            or len(node.args) != 1
            or pool is None
        ):
            continue
        if (
            pool.op != "call_module"
            or not isinstance(modules[pool.target], nn.MaxPool2d)
            or pool.args != (node,)
            or modules[pool.target].return_indices
            or pool.kwargs
            or calls[node.target] != 1
        ):
            continue
        pool.args = node.args
        with gm.graph.inserting_after(pool):
            act = gm.graph.call_module(node.target, (pool,))
        pool.replace_all_uses_with(act)
        act.args = (pool,)
        gm.graph.erase_node(node)
        swapped += 1
    return swapped


def inplace_float_ops(gm: fx.GraphModule) -> int:
    """Residual additions and clamping activations in place where their input is fresh and unshared;
    returns the count of rewritten nodes."""
    modules, calls, count = dict(gm.named_modules()), module_calls(gm), 0
    for node in list(gm.graph.nodes):
        if (
            node.op == "call_function"
            and node.target in ADDS
            and len(node.args) == 2
            and not node.kwargs
            and _fresh(node.args[0], modules)
        ):
            node.target = add_into
            count += 1
        elif (
            node.op == "call_module"
            and isinstance(modules[node.target], INPLACE_ACTIVATIONS)
            and len(node.args) == 1
            and _fresh(node.args[0], modules)
            and calls[node.target] == 1
        ):
            modules[node.target].inplace = True
            count += 1
    return count


__all__ = [
    "ADDS",
    "INPLACE_ACTIVATIONS",
    "add_into",
    "drop_identities",
    "fold_float_batchnorms",
    "inplace_float_ops",
    "pool_before_activation",
]

"""The inference graph of a packed model: binary layers hand packed bits to each other.

Where a packed convolution A feeds, through per-channel elementwise modules only (BatchNorm,
activations, Identity, Dropout), a packed convolution D and nothing else, the float round trip
between them (epilogue, BatchNorm, activation, D's threshold and sign, D's packing of its input)
is one integer comparison per channel on A's exact int32 output:

    bit_c = [f_c(acc_c) - t_c >= 0] = [s_c * acc_c >= theta_c]

with f_c the float chain (A's scale and bias, BatchNorm, activation) and t_c D's threshold.
``acc`` is an integer in [-K, K] (K = A's reduction length), so f_c is evaluated by the float
modules themselves on every such integer, and the comparison is kept when its outcome is one
step in acc (s_c = +1 rising, -1 falling; a constant outcome is a step at the end): that is
exactly what the float chain decides for every input. A pair whose outcome is not a step, or
whose layers carry a data-dependent (gating) scale, stays as it was. A's output then goes to D
as packed bits, in the pixel-major layout the kernels use (no layout conversion in between).

Two more rewrites make the float parts that remain cheaper: a BatchNorm right after a packed
convolution (and after nothing else) is folded into that convolution's per-channel scale and bias
(one pass less; float rounding changes by an ulp or so), and the whole network runs channels-last
(NHWC), the layout of the binary kernels' output: the input is converted once at the entry, the
packed convolutions read channels-last activations as they lie.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from ..kernels import thread_pools
from ..surgery.activations import RPReLU
from .float_rewrites import drop_identities, fold_float_batchnorms, inplace_float_ops, pool_before_activation
from .fx_nodes import single_user
from .image_split import pool_split_convs, split_float_convs
from .packed_layers import PackedBinaryConv2d, PackedBinaryLinear
from .pool_fusion import PooledClamp, fuse_pooling
from .residual_fusion import fuse_residuals, hand_bits_to_next
from .to_bits import PackedConv2dToBits

ELEMENTWISE = (
    nn.BatchNorm2d,
    nn.Identity,
    nn.Dropout,
    nn.Hardtanh,
    nn.ReLU,
    nn.ReLU6,
    nn.PReLU,
    nn.LeakyReLU,
    RPReLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.SiLU,
    nn.GELU,
)


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, (PackedBinaryConv2d, PackedBinaryLinear, RPReLU)) or super().is_leaf_module(m, qualname)


@dataclasses.dataclass
class GraphReport:
    bit_links: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    not_linked: dict[str, str] = dataclasses.field(default_factory=dict)
    folded_batchnorms: int = 0
    folded_float_batchnorms: int = 0
    fused_residuals: int = 0
    residual_bits: int = 0
    pools_first: int = 0
    fused_pools: int = 0
    pool_bits: int = 0
    inplace_ops: int = 0
    split_convs: int = 0
    split_conv_pools: int = 0

    def __str__(self) -> str:
        lines = [
            f"{len(self.bit_links)} binary convolutions hand packed bits to the next one, "
            f"{self.folded_batchnorms} BatchNorms folded into binary convolutions, "
            f"{self.folded_float_batchnorms} into float ones, {self.fused_residuals} residual additions "
            f"(and activations) in binary convolutions' epilogues ({self.residual_bits} of them also packing "
            f"the next binary layer's input), {self.pools_first} max-poolings moved before "
            f"their activation, {self.fused_pools} max-poolings (and activations) in one pass "
            f"({self.pool_bits} of them also packing the next binary layer's input), "
            f"{self.inplace_ops} float ops in place, {self.split_convs} float convolutions dealt image by "
            f"image to the kernel threads ({self.split_conv_pools} of them pooling each image as it is made)"
        ]
        lines += [f"  float between {n} and the next binary layer: {why}" for n, why in self.not_linked.items()]
        return "\n".join(lines)


@torch.no_grad()
def integer_thresholds(conv: PackedBinaryConv2d, chain: list[nn.Module], nxt: PackedBinaryConv2d):
    """(sgn, thr) int32 per channel with [f(acc) - t >= 0] == [sgn * acc >= thr] for every
    integer acc in [-K, K]; None when some channel's outcome is not one step."""
    k, o = conv.k, conv.out_channels
    grid = torch.arange(-k, k + 1, dtype=torch.int32)
    acc = grid.view(-1, 1, 1, 1).expand(-1, o, 1, 1).contiguous()
    y = conv._epilogue(acc, torch.zeros((), dtype=torch.float32), 1)
    for m in chain:
        y = m(y)
    if nxt.threshold is not None:
        y = y - nxt.threshold.view(1, -1, 1, 1)
    bit = (y >= 0).reshape(len(grid), o)
    count = bit.sum(0)
    idx = torch.arange(len(grid)).view(-1, 1)
    rising = (bit == (idx >= len(grid) - count)).all(0)
    falling = (bit == (idx < count)).all(0)
    if not bool((rising | falling).all()):
        return None
    sgn = torch.where(rising, 1, -1).to(torch.int32)
    thr = torch.where(rising, (len(grid) - count) - k, k + 1 - count).to(torch.int32)
    return sgn, thr


def to_channels_last(x):
    """The network's input in the layout the whole inference graph keeps (4-D tensors)."""
    return x.contiguous(memory_format=torch.channels_last) if isinstance(x, torch.Tensor) and x.dim() == 4 else x


@torch.no_grad()
def batchnorm_scale(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(g, beta) of a BatchNorm in eval: ``bn(y) = y g + (beta - mean g)``, g = gamma / sqrt(var + eps)."""
    g = (
        bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
        if bn.affine
        else 1 / torch.sqrt(bn.running_var + bn.eps)
    )
    return g, bn.bias.detach() if bn.affine else torch.zeros_like(g)


@torch.no_grad()
def batchnorm_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 (alpha, beta) with ``bn(y) = y * alpha + beta`` in eval, rounded once, as torch's CPU
    BatchNorm computes it: ``alpha = gamma * rsqrt(var + eps)`` in float32, and ``beta`` the kernel's
    own ``beta - mean * alpha``, read as ``bn(0)`` (however the kernel rounds it)."""
    inv = torch.rsqrt(bn.running_var.float() + bn.eps)
    alpha = bn.weight.detach().float() * inv if bn.affine else inv
    zero = torch.zeros(1, bn.num_features, 1, 1, device=inv.device)
    beta = F.batch_norm(zero, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
    return alpha.contiguous(), beta.flatten().float().contiguous()


@torch.no_grad()
def fold_batchnorm(conv: PackedBinaryConv2d, bn: nn.BatchNorm2d) -> None:
    """conv's epilogue followed by bn in eval, as one per-channel scale and bias. A convolution
    without its own scale and bias takes bn's (alpha, beta) (:func:`batchnorm_affine`) and a fused
    multiply-add epilogue: its outputs are bn's, bit for bit. Otherwise
    bn(s * acc + b) = (s g) acc + (b g + beta - mean g) (:func:`batchnorm_scale`), float rounding apart."""
    if conv.scale is None and conv.bias is None:
        conv.scale, conv.bias = batchnorm_affine(bn)
        conv.fused_epilogue = True
        return
    g, beta = batchnorm_scale(bn)
    scale = g if conv.scale is None else conv.scale * g
    bias = beta - bn.running_mean * g if conv.bias is None else conv.bias * g + beta - bn.running_mean * g
    conv.scale, conv.bias = scale.float().contiguous(), bias.float().contiguous()


def link_packed_convs(gm: fx.GraphModule, report: GraphReport) -> list[tuple[str, str]]:
    """Every packed convolution that feeds only another one through elementwise modules hands it
    packed bits (``PackedConv2dToBits``); why a convolution was not linked goes to ``report``."""
    links: list[tuple[str, str]] = []
    modules = dict(gm.named_modules())
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(modules[node.target], PackedBinaryConv2d):
            continue
        conv = modules[node.target]
        chain, cur = [], single_user(node)
        while (
            cur is not None
            and cur.op == "call_module"
            and isinstance(modules[cur.target], ELEMENTWISE)
            and len(cur.args) == 1
        ):
            chain.append(cur)
            cur = single_user(cur)
        if (
            cur is None
            or cur.op != "call_module"
            or not isinstance(modules[cur.target], PackedBinaryConv2d)
            or cur.args[0] is not (chain[-1] if chain else node)
        ):
            continue
        nxt = modules[cur.target]
        if conv.gate is not None or nxt.gate is not None:
            report.not_linked[node.target] = "gating scale (data-dependent)"
            continue
        found = integer_thresholds(conv, [modules[c.target] for c in chain], nxt)
        if found is None:
            report.not_linked[node.target] = "the float chain's sign is not one step in the integer output"
            continue
        name = node.target.replace(".", "_") + "_to_bits"
        gm.add_submodule(name, PackedConv2dToBits(conv, *found, nxt.input_pads()))
        with gm.graph.inserting_after(node):
            new = gm.graph.call_module(name, node.args, node.kwargs)
        cur.args = (new,) + tuple(cur.args[1:])
        for c in reversed(chain):
            gm.graph.erase_node(c)
        gm.graph.erase_node(node)
        links.append((node.target, cur.target))
    return links


def fold_packed_batchnorms(gm: fx.GraphModule) -> int:
    """Every BatchNorm read only after a packed convolution without a gating scale joins the
    convolution's affine epilogue (:func:`fold_batchnorm`); returns how many."""
    folded = 0
    modules = dict(gm.named_modules())
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(modules.get(node.target), PackedBinaryConv2d):
            continue
        conv, user = modules[node.target], single_user(node)
        if conv.gate is not None or user is None or user.op != "call_module":
            continue
        bn = modules[user.target]
        if isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats and bn.running_mean is not None:
            fold_batchnorm(conv, bn)
            user.replace_all_uses_with(node)
            gm.graph.erase_node(user)
            folded += 1
    return folded


@dataclasses.dataclass(frozen=True)
class Rewrite:
    """One rewrite of the inference graph: what it matches, what it puts there, the pass that does
    it (``run(gm, report)``, its result stored in ``report.<field>``)."""

    field: str | None
    pattern: str
    replacement: str
    run: Callable[[fx.GraphModule, GraphReport], Any]
    folds: bool = True  # skipped with fold_bn=False


def _on_graph(fn: Callable[..., Any], *args) -> Callable[[fx.GraphModule, GraphReport], Any]:
    """A pass that reads only the graph (``fn(gm, *args)``), in the table's ``run(gm, report)`` form."""
    return lambda gm, report: fn(gm, *args)


# In order: each pass sees the graph the ones before it left. docs/deployment.md lists the kernels.
REWRITES: tuple[Rewrite, ...] = (
    Rewrite(
        "bit_links",
        "packed conv -> elementwise modules -> packed conv",
        "PackedConv2dToBits: integer thresholds, packed bits out",
        link_packed_convs,
        folds=False,
    ),
    Rewrite(
        "folded_batchnorms",
        "packed conv -> BatchNorm2d",
        "the conv's affine epilogue",
        _on_graph(fold_packed_batchnorms),
    ),
    Rewrite(None, "Identity, Dropout", "(removed)", _on_graph(drop_identities)),
    Rewrite(
        "folded_float_batchnorms",
        "float conv -> BatchNorm2d",
        "the conv's weight and bias",
        _on_graph(fold_float_batchnorms),
    ),
    Rewrite(
        "pools_first",
        "clamping activation -> MaxPool2d",
        "MaxPool2d -> activation",
        _on_graph(pool_before_activation),
    ),
    Rewrite(
        "fused_residuals",
        "packed conv -> + residual -> clamping activation",
        "PackedConv2dResidual: all in the epilogue",
        _on_graph(fuse_residuals),
    ),
    Rewrite(
        "residual_bits",
        "PackedConv2dResidual -> packed conv",
        "the epilogue also packs the next conv's input",
        _on_graph(hand_bits_to_next),
    ),
    Rewrite("fused_pools", "MaxPool2d -> clamping activation", "PooledClamp: one pass", _on_graph(fuse_pooling)),
    Rewrite(
        "pool_bits",
        "PooledClamp -> packed conv",
        "the pass also packs the next conv's input",
        _on_graph(hand_bits_to_next, (PooledClamp,)),
    ),
    Rewrite(
        "inplace_ops",
        "float additions and activations",
        "in place where the input has no other reader",
        _on_graph(inplace_float_ops),
    ),
    Rewrite(
        "split_convs",
        "float conv",
        "ImageSplitConv2d: a batch's images dealt to the kernel threads",
        _on_graph(split_float_convs),
    ),
    Rewrite(
        "split_conv_pools",
        "ImageSplitConv2d -> PooledClamp",
        "ImageSplitConvPool: each image pooled by the thread that made it",
        _on_graph(pool_split_convs),
    ),
)


def build_inference_graph(
    packed: nn.Module, channels_last: bool = True, fold_bn: bool = True
) -> tuple[nn.Module, GraphReport]:
    """A copy of a packed model (``pack_model``) traced with torch.fx, in which every packed
    convolution that feeds only another one through elementwise modules hands it packed bits,
    BatchNorms after packed and float convolutions are folded into them, the residual addition and
    clamping activation after a packed convolution join its epilogue (``residual_fusion``), a max-pooling
    and its clamping activation run as one pass that also packs the next binary layer's input
    (``pool_fusion``), the other
    additions and activations run in place (``fold_bn``; ``float_rewrites``), and the
    network runs channels-last (``channels_last``). Its forward runs the float layers on the calling
    thread where the kernels run on TBB (``kernels.thread_pools.float_ops_on_caller``: one pool, no
    spinning team beside it). The model itself is not changed; a model torch.fx cannot trace is
    returned as a copy."""
    report = GraphReport()
    model = copy.deepcopy(packed).eval()
    try:
        gm = fx.GraphModule(model, _Tracer().trace(model))
    except Exception as exc:  # noqa: BLE001 - dynamic control flow: no graph, plain packed model
        report.not_linked["(model)"] = f"not traceable by torch.fx ({type(exc).__name__})"
        return model, report
    for rewrite in REWRITES:
        if fold_bn or not rewrite.folds:
            value = rewrite.run(gm, report)
            if rewrite.field is not None:
                setattr(report, rewrite.field, value)
    if channels_last:
        for node in gm.graph.nodes:
            if node.op == "placeholder":
                with gm.graph.inserting_after(node):
                    entry = gm.graph.call_function(to_channels_last, (node,))
                node.replace_all_uses_with(entry)
                entry.args = (node,)
                break
        gm = gm.to(memory_format=torch.channels_last)
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.recompile()
    gm.requires_grad_(False)  # packed kernels have no backward: no graph recorded for their float inputs
    gm.register_forward_pre_hook(thread_pools.enter_float_ops_on_caller)
    gm.register_forward_hook(thread_pools.exit_float_ops_on_caller, always_call=True)
    return gm, report


__all__ = [
    "GraphReport",
    "batchnorm_affine",
    "batchnorm_scale",
    "PackedConv2dToBits",
    "REWRITES",
    "Rewrite",
    "build_inference_graph",
    "fold_batchnorm",
    "integer_thresholds",
    "to_channels_last",
]

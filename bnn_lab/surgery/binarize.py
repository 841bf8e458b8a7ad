"""The module-surgery pass: Conv2d / Linear -> binary versions, in place."""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from .. import estimators
from ..errors import ConfigError
from ..layers import BinaryConv2d, BinaryLinear, BinaryMixin, attach_weight_group, build_scale, build_weight_norm
from ..models.stem import first_conv_name
from .activations import build_activation
from .policy import Policy, is_downsample
from .replicate import replicate_channels

log = logging.getLogger(__name__)

_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
EstimatorSpec = str | Mapping[str, Any] | Callable[..., nn.Module]


@dataclasses.dataclass
class SurgeryReport:
    """What the pass changed: binarized layers, kept layers (with the reason), swapped
    activations, and parameter-holding modules it does not know (left as they are)."""

    binarized: list[str] = dataclasses.field(default_factory=list)
    kept: dict[str, str] = dataclasses.field(default_factory=dict)
    activations: list[str] = dataclasses.field(default_factory=list)
    left_alone: dict[str, str] = dataclasses.field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"surgery: {len(self.binarized)} layers binarized, {len(self.kept)} kept in full precision"]
        lines += [f"  kept {name} ({why})" for name, why in self.kept.items()]
        if self.activations:
            lines.append(f"  {len(self.activations)} activations replaced")
        lines += [f"  left alone: {name} ({what})" for name, what in self.left_alone.items()]
        return "\n".join(lines)


def _estimator_factory(spec: EstimatorSpec) -> Callable[..., nn.Module]:
    if callable(spec) and not isinstance(spec, Mapping):
        return spec
    if isinstance(spec, str):
        name, kwargs = spec, {}
    else:
        kwargs = dict(spec)
        name = kwargs.pop("name")
    estimators.get(name)  # fail early, listing the valid names

    def factory(**context) -> nn.Module:
        return estimators.build(name, **kwargs, **context)

    return factory


def _classifier_name(model: nn.Module, modules: dict[str, nn.Module]) -> str | None:
    get = getattr(model, "get_classifier", None)
    if callable(get):
        head = get()
        for name, m in modules.items():
            if m is head and isinstance(m, (nn.Linear, nn.Conv2d)):
                return name
    linears = [n for n, m in modules.items() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, leaf, module)


INPUT_MODES = ("binary", "soft", "real")
WEIGHT_MODES = ("binary", "real")


def binarize(
    model: nn.Module,
    estimator: EstimatorSpec = "ste",
    policy: Policy | Mapping[str, Any] | None = None,
    scale: str = "none",
    input_mode: str = "binary",
    weight_mode: str = "binary",
    group_weights: bool = True,
    replicate: int = 1,
    weight_norm: str | Mapping[str, Any] = "none",
) -> SurgeryReport:
    """Replace ``nn.Conv2d`` / ``nn.Linear`` in ``model`` by binary layers, in place.

    ``estimator``: a registered name, a mapping ``{"name": ..., **kwargs}`` or a factory
    called with ``role`` ("weight"/"input"), ``features`` and ``channels``. Every binary
    layer gets its own estimator modules. Trained weights are reused as the latent weights.
    Layers that are already binary are left as they are (their learned scales survive).
    A model's ``real_layers`` (regular expressions, full match) name layers that its
    architecture keeps real, such as BNext's squeeze-and-excite gates.

    ``input_mode``: ``binary`` (sign through the estimator), ``soft`` (tanh, the second stage
    of Real-to-Binary's recipe) or ``real``; ``weight_mode``: ``binary`` or ``real`` (latent
    weights used as they are, for the real-weight stages). ``group_weights``: the binary layers binarize their weights
    together, once per forward pass of ``model`` (:mod:`bnn_lab.layers.weight_group`: the
    same values, fewer small ops); False: each layer on its own (an earlier group is removed).
    ``replicate`` = beta > 1: channel replication (RepTran, :mod:`bnn_lab.surgery.replicate`)
    before the conversion; 1 leaves the network's layout as it is.
    ``weight_norm``: a normalization of the latent weights before their sign (``none``,
    ``imb``, or ``{name, <options>}``: :mod:`bnn_lab.layers.weight_norm`), for binary weights.
    """
    policy = Policy.from_any(policy)
    if input_mode not in INPUT_MODES or weight_mode not in WEIGHT_MODES:
        raise ConfigError(f"input_mode must be one of {INPUT_MODES}, weight_mode one of {WEIGHT_MODES}")
    make_estimator = _estimator_factory(estimator)
    modules = dict(model.named_modules())
    layers = {n: m for n, m in modules.items() if isinstance(m, (nn.Conv2d, nn.Linear))}
    report = SurgeryReport()

    patterns = [re.compile(p) for p in policy.keep]
    real_by_design = [re.compile(p) for p in getattr(model, "real_layers", ())]
    for pattern, raw in zip(patterns, policy.keep):
        if not any(raw == n or pattern.fullmatch(n) for n in layers):
            raise ConfigError(
                f"binarize.policy.keep entry {raw!r} matches no Conv2d/Linear; "
                f"layer names: {', '.join(list(layers)[:12])}{', ...' if len(layers) > 12 else ''}"
            )
    first = first_conv_name(model) if policy.keep_first else None
    last = _classifier_name(model, modules) if policy.keep_last else None

    plan: dict[str, str | None] = {}  # layer -> why it stays as it is (None: made binary)
    for name, layer in layers.items():
        reason = None
        if isinstance(layer, BinaryMixin):
            reason = "already binary"
        elif name == first:
            reason = "first layer"
        elif name == last:
            reason = "classifier"
        elif policy.keep_downsample and is_downsample(name, layer):
            reason = "downsample"
        elif any(raw == name or p.fullmatch(name) for p, raw in zip(patterns, policy.keep)):
            reason = "policy.keep"
        elif any(p.fullmatch(name) for p in real_by_design):
            reason = "real in the architecture"
        elif isinstance(layer, nn.Conv2d) and layer.padding_mode != "zeros":
            reason = f"padding_mode={layer.padding_mode} unsupported"
        plan[name] = reason
    if replicate > 1:
        plan = replicate_channels(model, plan, replicate, first_conv_name(model), _classifier_name(model, modules))

    for name, reason in plan.items():
        if reason:
            report.kept[name] = reason
            continue
        layer = model.get_submodule(name)
        out_ch = layer.out_channels if isinstance(layer, nn.Conv2d) else layer.out_features
        in_ch = layer.in_channels if isinstance(layer, nn.Conv2d) else layer.in_features
        if weight_mode == "binary":
            w_est = make_estimator(role="weight", features=layer.weight[0].numel(), channels=out_ch)
        else:
            w_est = nn.Identity()
        a_est = {
            "binary": lambda in_ch=in_ch: make_estimator(role="input", channels=in_ch),
            "soft": nn.Tanh,
            "real": lambda: None,
        }[input_mode]()
        cls = BinaryConv2d if isinstance(layer, nn.Conv2d) else BinaryLinear
        norm = build_weight_norm(weight_norm, layer) if weight_mode == "binary" else None
        layer_scale = build_scale(scale, layer)
        if norm is not None and layer_scale.changes_latent:
            raise ConfigError(
                f"binarize.weight_norm={weight_norm} cannot be combined with binarize.scale={scale}: "
                "that scale prepares the latent weights itself; use one of them"
            )
        new = cls.from_float(layer, w_est, a_est, layer_scale, norm)
        _set(model, name, new)
        report.binarized.append(name)

    if policy.activation is not None:
        channels = None
        for name, m in list(model.named_modules()):
            if isinstance(m, _NORMS) and hasattr(m, "num_features"):
                channels = m.num_features
            elif isinstance(m, nn.Conv2d):
                channels = m.out_channels
            elif isinstance(m, nn.ReLU):
                _set(model, name, build_activation(policy.activation, channels))
                report.activations.append(name)

    attach_weight_group(model, enabled=group_weights)

    converted = set(report.binarized) | set(report.kept)
    known = (nn.Conv2d, nn.Linear, nn.PReLU) + _NORMS
    for name, m in model.named_modules():
        own = list(m.parameters(recurse=False))
        if own and name not in converted and not isinstance(m, known) and not _inside(name, converted):
            if type(m).__module__.startswith(
                ("bnn_lab.estimators", "bnn_lab.layers", "bnn_lab.surgery", "bnn_lab.models")
            ):
                continue
            report.left_alone[name or "<root>"] = f"{type(m).__name__} with {len(own)} own parameter(s)"
    for name, what in report.left_alone.items():
        log.info("surgery left alone %s: %s", name, what)
    return report


def _inside(name: str, parents: set[str]) -> bool:
    return any(name.startswith(p + ".") for p in parents)

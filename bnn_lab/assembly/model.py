"""The network of a configuration: ``cfg.arch`` from timm, converted by the surgery pass for
a precision."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from .. import models
from ..surgery import SurgeryReport, binarize
from .precision import PRECISIONS, check_precision, config_precision


def build_model(
    cfg: Mapping[str, Any],
    in_chans: int,
    num_classes: int,
    img_size: int,
    precision: str | None = None,
) -> tuple[nn.Module, SurgeryReport | None]:
    """The timm model of ``cfg.arch``, converted for ``precision`` (default: what cfg asks for).

    ``arch.keep`` (optional) names layers the architecture itself has in full precision (a
    stem, say); they are kept besides ``binarize.policy.keep``. ``binarize.replicate`` > 1
    applies channel replication (``bnn_lab.surgery.replicate``) to the binary layers."""
    precision = check_precision(precision or config_precision(cfg))
    arch = cfg["arch"]
    model = models.create(
        arch["name"],
        in_chans=in_chans,
        num_classes=num_classes,
        input_size=img_size,
        small_stem=arch.get("small_stem"),
        **dict(arch.get("kwargs") or {}),
    )
    if PRECISIONS[precision] is None:
        return model, None
    input_mode, weight_mode = PRECISIONS[precision]
    policy = dict(cfg["binarize"]["policy"])
    policy.pop("weights_only", None)  # stored by earlier versions; the precision, stored apart, says it
    own, extra = arch.get("keep") or [], policy.get("keep") or []
    policy["keep"] = [*([own] if isinstance(own, str) else own), *([extra] if isinstance(extra, str) else extra)]
    report = binarize(
        model,
        estimator=dict(cfg["estimator"]),
        policy=policy,
        scale=cfg["binarize"]["scale"],
        input_mode=input_mode,
        weight_mode=weight_mode,
        group_weights=cfg["binarize"].get("group_weights", True),
        replicate=int(cfg["binarize"].get("replicate") or 1),
        weight_norm=cfg["binarize"].get("weight_norm") or "none",
    )
    return model, report

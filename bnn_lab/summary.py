"""Model summary: per-layer precision, parameters, deployed memory and MACs.

Deployed memory counts 1 bit per binary weight (2 per ternary weight: the weight estimator's
``bits``) and 32 bits per other parameter (BN affine parameters, biases, scales, FP layers);
buffers such as BN running statistics are not counted (they fold into the affine parameters at
deployment). MACs are counted per image from one forward pass; a MAC is binary when both its weight and its input are
binary (XNOR + popcount), and ``ops`` = FP MACs + binary MACs / 64 as in Bi-Real Net and
ReActNet.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from .layers import BinaryMixin


@dataclasses.dataclass
class LayerRow:
    name: str
    type: str
    weight_bits: int
    input_bits: int
    params: int
    binary_params: int
    memory_bytes: float
    macs: int
    lowbit_params: int = 0  # weights of more than 1 and fewer than 32 bits (ternary)


@dataclasses.dataclass
class ModelSummary:
    rows: list[LayerRow]

    @property
    def totals(self) -> dict[str, float]:
        binary = sum(r.binary_params for r in self.rows)
        lowbit = sum(r.lowbit_params for r in self.rows)
        total = sum(r.params for r in self.rows)
        deployed = sum(r.memory_bytes for r in self.rows)
        bmacs = sum(r.macs for r in self.rows if r.weight_bits == 1 and r.input_bits == 1)
        fmacs = sum(r.macs for r in self.rows) - bmacs
        return {
            "params": total,
            "binary_params": binary,
            "lowbit_params": lowbit,
            "fp_params": total - binary - lowbit,
            "size_deployed_mb": deployed / 2**20,
            "size_fp32_mb": 4 * total / 2**20,
            "compression": (4 * total) / deployed if deployed else 1.0,
            "binary_macs": bmacs,
            "fp_macs": fmacs,
            "ops": fmacs + bmacs / 64,
        }

    def table(self) -> str:
        head = f"{'layer':<42} {'type':<14} {'W':>3} {'A':>3} {'params':>10} {'memory':>10} {'MACs':>12}"
        lines = [head, "-" * len(head)]
        for r in self.rows:
            lines.append(
                f"{r.name[:42]:<42} {r.type[:14]:<14} {r.weight_bits:>3} {r.input_bits:>3} "
                f"{r.params:>10,} {_bytes(r.memory_bytes):>10} {r.macs:>12,}"
            )
        t = self.totals
        lines += [
            "-" * len(head),
            f"params: {t['params']:,} ({t['binary_params']:,} binary, "
            + (f"{t['lowbit_params']:,} low-bit, " if t["lowbit_params"] else "")
            + f"{t['fp_params']:,} full precision)",
            f"size as deployed: {t['size_deployed_mb']:.3f} MB vs {t['size_fp32_mb']:.3f} MB float32 "
            f"(compression {t['compression']:.1f}x)",
            f"MACs per image: {t['binary_macs']:,} binary, {t['fp_macs']:,} full precision "
            f"(ops = FP + binary/64: {t['ops']:,.0f})",
        ]
        return "\n".join(lines)


def _bytes(n: float) -> str:
    return f"{n / 1024:.1f} KiB" if n >= 1024 else f"{n:.0f} B"


def _macs(module: nn.Module, out: torch.Tensor) -> int:
    if isinstance(module, nn.Conv2d):
        per_out = module.in_channels // module.groups * math.prod(module.kernel_size)
        return int(out[0].numel() * per_out)
    if isinstance(module, nn.Linear):
        return int(out[0].numel() * module.in_features)
    return 0


@torch.no_grad()
def summarize(model: nn.Module, input_shape: tuple[int, ...]) -> ModelSummary:
    """Summary of ``model`` for one input of ``input_shape`` (C, H, W)."""
    macs: dict[str, int] = {}
    hooks = []
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            hooks.append(m.register_forward_hook(lambda mod, i, o, name=name: macs.__setitem__(name, _macs(mod, o))))
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else "cpu"
        model(torch.zeros(1, *input_shape, device=device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()

    # weight estimators only train (binary weights are stored already binarized): not deployed
    training_only = [f"{n}.weight_estimator." for n, m in model.named_modules() if isinstance(m, BinaryMixin)]
    rows = []
    for name, m in model.named_modules():
        own = [p for p in m.parameters(recurse=False)]
        if not own or any(name.startswith(prefix) for prefix in training_only):
            continue
        n = sum(p.numel() for p in own)
        if isinstance(m, BinaryMixin) and m.binary_weights:
            w = m.weight.numel()
            wb = m.weight_estimator.bits  # Quantizer.bits: ternary weights 2, k-bit inputs k
            ab = m.input_estimator.bits if m.binary_inputs else 32
            mem = w * wb / 8 + 4 * (n - w)
        else:
            w, mem, wb, ab = 0, 4 * n, 32, 32
        rows.append(
            LayerRow(
                name or "<root>",
                type(m).__name__,
                wb,
                ab,
                n,
                w if wb == 1 else 0,
                mem,
                macs.get(name, 0),
                w if wb > 1 else 0,
            )
        )
    return ModelSummary(rows)

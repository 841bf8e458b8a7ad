"""BiMLP (Xu et al., NeurIPS 2022, "BiMLP: Compact Binary Architectures for Vision
Multi-Layer Perceptrons"), registered in timm's registry.

A Wave-MLP-like backbone in four stages whose every FC (1x1 conv) and token mixer is a
binary unit (``BinaryUnit``):

    y = RPReLU(BN(W_b * sign(x + b)) + shortcut(x))

with b a learnable per-channel bias (before the sign), W_b the binary weights, and a
shortcut that costs nothing: the input itself when widths match; the input tiled C_out/C_in
times when the width grows; the mean of each group of C_in/C_out consecutive channels when
it shrinks. In full precision the activation is ReLU; the surgery replaces it by RPReLU.

Block (the token mixing of Wave-MLP without its phase term, split into branches):
- three branches on the same input: a binary 1x1 FC (channel mixing), a binary depthwise
  1x7 conv (mixing along the width) and a binary depthwise 7x1 conv (along the height),
  merged by learned scalars, a_c y_c + a_w y_w + a_h y_h (each initialized to 1/3), then a
  binary 1x1 FC projection;
- a channel MLP: binary FC C -> 4C (tiled shortcut), binary FC 4C -> C (averaged shortcut).
Stages: a downsampling (except the first), then the blocks, plus a universal shortcut from
the stage's input (after downsampling) to its output, so every stage is a residual of the
previous one. Downsampling: a full-precision 1x1 conv -> BN, then the average of 2x2, 3x3,
5x5 and 7x7 max-pools with stride 2 (padded so that all give ceil(H/2)).
Stem: a full-precision 7x7/4 conv (Wave-MLP's patch embedding) -> BN; for inputs up to
64 px the surgery's small stem makes it 3x3/1. Head: BN -> global pool -> FC (full
precision).

The depthwise token mixers are binary in training but have no packed kernel (grouped
convolutions): the packed export keeps them in float and says so.

The paper's training recipe and exact widths are not released; the options here:
- bimlp_tiny (ImageNet size): widths (64, 128, 320, 512), blocks (2, 2, 4, 2) (Wave-MLP-T);
- bimlp_small (28-32 px inputs): widths (32, 64, 128, 256), blocks (1, 1, 2, 1), 3x3/1 stem.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.models import register_model
from torch import nn

from ._timm import ClassifierHead, strip_factory_kwargs
from .bnext import LearnableBias

MLP_RATIO = 4
MIXER_KERNEL = 7


def width_shortcut(x: torch.Tensor, out_ch: int) -> torch.Tensor:
    """x tiled to ``out_ch`` channels (growing) or averaged over groups of channels (shrinking)."""
    in_ch = x.shape[1]
    if out_ch == in_ch:
        return x
    if out_ch > in_ch:
        return x.repeat(1, out_ch // in_ch, 1, 1)
    n, _, h, w = x.shape
    return x.view(n, out_ch, in_ch // out_ch, h, w).mean(2)


class BinaryUnit(nn.Module):
    """RPReLU(BN(conv(x + b)) + shortcut(x)); ``conv`` is made binary by the surgery."""

    def __init__(self, in_ch: int, out_ch: int, kernel: tuple[int, int] = (1, 1), depthwise: bool = False) -> None:
        super().__init__()
        if max(in_ch, out_ch) % min(in_ch, out_ch):
            raise ValueError(f"BiMLP units change the width by an integer factor, not {in_ch} -> {out_ch}")
        self.out_ch = out_ch
        self.move = LearnableBias(in_ch)
        padding = (kernel[0] // 2, kernel[1] // 2)
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, 1, padding, groups=in_ch if depthwise else 1, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(self.move(x))) + width_shortcut(x, self.out_ch))


class BiMLPBlock(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.channel = BinaryUnit(ch, ch)
        self.width = BinaryUnit(ch, ch, (1, MIXER_KERNEL), depthwise=True)
        self.height = BinaryUnit(ch, ch, (MIXER_KERNEL, 1), depthwise=True)
        self.merge = nn.Parameter(torch.full((3,), 1.0 / 3))
        self.proj = BinaryUnit(ch, ch)
        self.fc1 = BinaryUnit(ch, MLP_RATIO * ch)
        self.fc2 = BinaryUnit(MLP_RATIO * ch, ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.merge
        mixed = a[0] * self.channel(x) + a[1] * self.width(x) + a[2] * self.height(x)
        return self.fc2(self.fc1(self.proj(mixed)))


class MultiMaxPool(nn.Module):
    """Mean of max-pools with kernels 2, 3, 5, 7, stride 2, each giving ceil(H/2) x ceil(W/2)."""

    kernels = (2, 3, 5, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pools = [F.max_pool2d(x, 2, 2, ceil_mode=True)]
        pools += [F.max_pool2d(x, k, 2, k // 2) for k in self.kernels[1:]]
        return torch.stack(pools).mean(0)


class Downsample(nn.Module):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)
        self.pool = MultiMaxPool()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.bn(self.conv(x)))


class Stage(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, blocks: int, downsample: bool) -> None:
        super().__init__()
        self.downsample = Downsample(in_ch, out_ch) if downsample else nn.Identity()
        self.blocks = nn.Sequential(*(BiMLPBlock(out_ch) for _ in range(blocks)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        return self.blocks(x) + x  # universal shortcut from the previous stage


class BiMLP(ClassifierHead, nn.Module):
    def __init__(
        self,
        widths: tuple[int, ...] = (64, 128, 320, 512),
        blocks: tuple[int, ...] = (2, 2, 4, 2),
        stem_kernel: int = 7,
        stem_stride: int = 4,
        in_chans: int = 3,
        num_classes: int = 1000,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.stem = nn.Sequential()
        padding = stem_kernel // 2 - (stem_stride > 1)  # 7x7/4: padding 2, as Wave-MLP's patch embedding
        self.stem.add_module("conv", nn.Conv2d(in_chans, widths[0], stem_kernel, stem_stride, padding, bias=False))
        self.stem.add_module("bn", nn.BatchNorm2d(widths[0]))
        self.stages = nn.Sequential()
        ch = widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks)):
            self.stages.add_module(f"stage{i + 1}", Stage(ch, w, n, downsample=i > 0))
            ch = w
        self.num_features = ch
        self.norm = nn.BatchNorm2d(ch)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(ch, num_classes)
        self.pretrained_cfg = {"first_conv": "stem.conv", "classifier": "fc", "architecture": "bimlp"}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.stages(self.stem(x)))


@register_model
def bimlp_tiny(pretrained: bool = False, **kwargs) -> BiMLP:
    model = BiMLP(widths=(64, 128, 320, 512), blocks=(2, 2, 4, 2), **strip_factory_kwargs(kwargs))
    model.pretrained_cfg["architecture"] = "bimlp_tiny"
    return model


@register_model
def bimlp_small(pretrained: bool = False, **kwargs) -> BiMLP:
    model = BiMLP(
        widths=(32, 64, 128, 256), blocks=(1, 1, 2, 1), stem_kernel=3, stem_stride=1, **strip_factory_kwargs(kwargs)
    )
    model.pretrained_cfg["architecture"] = "bimlp_small"
    return model

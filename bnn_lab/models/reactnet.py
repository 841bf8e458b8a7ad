"""ReActNet-A (Liu et al., ECCV 2020), registered in timm's registry.

MobileNetV1's layout with each depthwise-separable pair replaced by a 3x3 conv and a 1x1
conv (both binary after surgery), each with a parameter-free shortcut: AvgPool(2) where the
3x3 conv has stride 2, and, where the channels double, two 1x1 convs whose outputs (each
plus the input) are concatenated. Full-precision 3x3/2 stem conv and classifier.

In full precision the activations are ReLU; the surgery replaces them (``rprelu`` by
default for this architecture) and ``estimator=rsign`` gives ReActNet's RSign.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.models import register_model
from torch import nn

from ._timm import ClassifierHead, strip_factory_kwargs

# (out channels, stride) of MobileNetV1's 13 separable blocks, after a 32-channel stem
MOBILENET_V1 = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)


class ReActBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        if out_ch not in (in_ch, 2 * in_ch):
            raise ValueError("ReActNet blocks keep or double the channels")
        self.stride = stride
        self.conv3x3 = nn.Conv2d(in_ch, in_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.act1 = nn.ReLU()
        n = out_ch // in_ch
        self.pointwise = nn.ModuleList(nn.Conv2d(in_ch, in_ch, 1, bias=False) for _ in range(n))
        self.bn2 = nn.ModuleList(nn.BatchNorm2d(in_ch) for _ in range(n))
        # one activation per part, so per-channel replacements (RPReLU) see in_ch channels
        self.act2 = nn.ModuleList(nn.ReLU() for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = F.avg_pool2d(x, 2, ceil_mode=True) if self.stride > 1 else x
        out = self.bn1(self.conv3x3(x))
        if out.shape[-2:] != shortcut.shape[-2:]:  # odd sizes: align the pooled shortcut
            shortcut = shortcut[..., : out.shape[-2], : out.shape[-1]]
        out = self.act1(out + shortcut)
        parts = [act(bn(conv(out)) + out) for conv, bn, act in zip(self.pointwise, self.bn2, self.act2)]
        return torch.cat(parts, dim=1)


class ReActNet(ClassifierHead, nn.Module):
    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        stem_width: int = 32,
        layout=MOBILENET_V1,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.stem = nn.Sequential()
        self.stem.add_module("conv", nn.Conv2d(in_chans, stem_width, 3, 2, 1, bias=False))
        self.stem.add_module("bn", nn.BatchNorm2d(stem_width))
        self.stem.add_module("act", nn.ReLU())
        blocks, ch = [], stem_width
        for out, stride in layout:
            blocks.append(ReActBlock(ch, out, stride))
            ch = out
        self.blocks = nn.Sequential(*blocks)
        self.num_features = ch
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(ch, num_classes)
        self.pretrained_cfg = {"first_conv": "stem.conv", "classifier": "fc", "architecture": "reactnet_a"}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))


@register_model
def reactnet_a(pretrained: bool = False, **kwargs) -> ReActNet:
    return ReActNet(**strip_factory_kwargs(kwargs))

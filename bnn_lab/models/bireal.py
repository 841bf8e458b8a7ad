"""Bi-Real Net (Liu et al., ECCV 2018), registered in timm's registry.

A ResNet whose every 3x3 conv has its own identity shortcut (real-valued information
bypasses each binary conv); downsampling shortcuts are AvgPool(2) -> 1x1 conv -> BN,
kept real-valued as in the paper. Blocks are BN-after-conv with no ReLU between convs:
in full precision the activation is ReLU, which the surgery replaces (by default with
identity: the next binary conv sees sign(x) of the real-valued sum).

Bi-Real-18 at 224x224 with 1000 classes has 11.69 M parameters (timm's ResNet-18 layout);
larq-zoo's reproduction reports 11.99 M (57.47 % top-1) with its own stem details.
"""

from __future__ import annotations

import torch
from timm.models import register_model
from torch import nn

from ._timm import ClassifierHead, strip_factory_kwargs


class BiRealUnit(nn.Module):
    """conv -> BN, plus the unit's input (through the downsample path if shapes change)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)
        self.act = nn.ReLU()
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False) if stride > 1 else nn.Identity(),
                nn.Conv2d(in_ch, out_ch, 1, bias=False),
                nn.BatchNorm2d(out_ch),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.act(self.bn(self.conv(x)) + shortcut)


class BiRealNet(ClassifierHead, nn.Module):
    def __init__(
        self,
        layers: tuple[int, ...] = (2, 2, 2, 2),
        widths: tuple[int, ...] = (64, 128, 256, 512),
        in_chans: int = 3,
        num_classes: int = 1000,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_classes, self.num_features = num_classes, widths[-1]
        self.conv1 = nn.Conv2d(in_chans, widths[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.act1 = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_ch = widths[0]
        for i, (n, w) in enumerate(zip(layers, widths)):
            units = []
            for j in range(n):  # each basic block = two units
                stride = 2 if (i > 0 and j == 0) else 1
                units += [BiRealUnit(in_ch, w, stride), BiRealUnit(w, w, 1)]
                in_ch = w
            self.add_module(f"layer{i + 1}", nn.Sequential(*units))
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(in_ch, num_classes)
        self.pretrained_cfg = {"first_conv": "conv1", "classifier": "fc", "architecture": "bireal"}
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


@register_model
def bireal18(pretrained: bool = False, **kwargs) -> BiRealNet:
    return BiRealNet(layers=(2, 2, 2, 2), **strip_factory_kwargs(kwargs))


@register_model
def bireal34(pretrained: bool = False, **kwargs) -> BiRealNet:
    return BiRealNet(layers=(3, 4, 6, 3), **strip_factory_kwargs(kwargs))

"""CIFAR-style ResNets (He et al. 2016, section 4.2), registered in timm's registry.

ResNet-20: a 3x3 stem with 16 filters, three stages of three BasicBlocks (16, 32, 64
filters, stride 2 at the start of stages 2 and 3), 1x1 convolution + BN shortcuts where
the shape changes (option B), global average pooling and a linear classifier (about
0.27 M parameters). By default each conv has its own shortcut, as in the IR-Net code base
that the FDA, IR-Net and DIR-Net CIFAR-10 tables use; ``shortcut_every_conv=False`` gives
He et al.'s original block.
Module names follow timm's ResNet (conv1/bn1/act1, layerN, global_pool, fc), so the
surgery pass and ``get_classifier()`` treat both alike.
"""

from __future__ import annotations

import torch
from timm.models import register_model
from torch import nn

from ._timm import ClassifierHead, strip_factory_kwargs


class BasicBlock(nn.Module):
    """Two 3x3 convs. ``shortcut_every_conv`` (IR-Net / Bi-Real style, the variant of the
    FDA and IR-Net CIFAR tables) adds an identity shortcut around each conv instead of one
    around the pair, so real-valued information bypasses every binary conv."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, shortcut_every_conv: bool = True) -> None:
        super().__init__()
        self.shortcut_every_conv = shortcut_every_conv
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.act2 = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        if self.shortcut_every_conv:
            out = self.act1(self.bn1(self.conv1(x)) + shortcut)
            return self.act2(self.bn2(self.conv2(out)) + out)
        out = self.act1(self.bn1(self.conv1(x)))
        return self.act2(self.bn2(self.conv2(out)) + shortcut)


class CifarResNet(ClassifierHead, nn.Module):
    def __init__(
        self,
        depth: int = 20,
        widths: tuple[int, int, int] = (16, 32, 64),
        in_chans: int = 3,
        num_classes: int = 10,
        drop_rate: float = 0.0,
        shortcut_every_conv: bool = True,
    ) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        blocks = (depth - 2) // 6
        self.num_classes, self.num_features = num_classes, widths[-1]
        self.conv1 = nn.Conv2d(in_chans, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.act1 = nn.ReLU(inplace=True)
        in_ch = widths[0]
        for i, w in enumerate(widths):
            layers = [
                BasicBlock(in_ch if j == 0 else w, w, 2 if (i > 0 and j == 0) else 1, shortcut_every_conv)
                for j in range(blocks)
            ]
            self.add_module(f"layer{i + 1}", nn.Sequential(*layers))
            in_ch = w
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(widths[-1], num_classes)
        self.pretrained_cfg = {"first_conv": "conv1", "classifier": "fc", "architecture": f"resnet{depth}"}
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv1(x)))
        return self.layer3(self.layer2(self.layer1(x)))


def _make(depth: int, **kwargs) -> CifarResNet:
    kwargs = strip_factory_kwargs(kwargs)
    return CifarResNet(depth=depth, **kwargs)


@register_model
def resnet20(pretrained: bool = False, **kwargs) -> CifarResNet:
    return _make(20, **kwargs)


@register_model
def resnet32(pretrained: bool = False, **kwargs) -> CifarResNet:
    return _make(32, **kwargs)

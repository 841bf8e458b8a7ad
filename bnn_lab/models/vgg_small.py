"""VGG-Small (the CIFAR-10 network of LQ-Nets, XNOR-Net and IR-Net tables), registered in
timm's registry: conv(128)-conv(128)-pool-conv(256)-conv(256)-pool-conv(512)-conv(512)-pool,
then a linear classifier; BN after every conv. About 4.6 M parameters for 32x32 inputs.

The classifier input depends on the input size: the head pools to 4x4 (32x32 inputs give
exactly 4x4 after three poolings) so any input size works.
"""

from __future__ import annotations

import torch
from timm.models import register_model
from torch import nn

from ._timm import ClassifierHead, strip_factory_kwargs


class VGGSmall(ClassifierHead, nn.Module):
    def __init__(
        self, in_chans: int = 3, num_classes: int = 10, widths=(128, 256, 512), drop_rate: float = 0.0
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        layers: list[nn.Module] = []
        in_ch = in_chans
        for w in widths:
            for j in range(2):
                layers += [nn.Conv2d(in_ch, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w)]
                if j == 1:
                    layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
                layers.append(nn.ReLU())
                in_ch = w
        self.features = nn.Sequential(*layers)
        self.global_pool = nn.AdaptiveAvgPool2d(4)
        self.num_features = in_ch * 16
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(self.num_features, num_classes)
        self.pretrained_cfg = {"first_conv": "features.0", "classifier": "fc", "architecture": "vgg_small"}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


@register_model
def vgg_small(pretrained: bool = False, **kwargs) -> VGGSmall:
    return VGGSmall(**strip_factory_kwargs(kwargs))

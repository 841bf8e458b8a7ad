"""MeliusNet (Bethge et al., "MeliusNet: Can Binary Neural Networks Achieve MobileNet-level
Accuracy?"), registered in timm's registry; layout as larq-zoo's MeliusNet22.

- stem (full precision): 3x3/2 conv to 32 -> BN -> ReLU -> 3x3 grouped conv 32 -> 32
  (4 groups) -> BN -> ReLU -> 3x3 grouped conv 32 -> 64 (8 groups) -> BN -> ReLU ->
  2x2/2 max-pool;
- each block is a Dense Block, x -> [x, conv(BN(x))] (64 new channels), then an
  Improvement Block, x -> x + [0, conv(BN(x))] (the conv's 64 channels are added to the
  last 64 channels: it refines what the dense block just added); both 3x3 convs binary,
  their input binarized straight after BN (no activation);
- transitions (full precision): BN -> 2x2/2 max-pool -> ReLU -> 1x1 conv;
- BN -> ReLU -> global average pool -> classifier (full precision).

MeliusNet22: blocks (4, 5, 4, 4), transitions to (160, 224, 256) channels. larq-zoo's
table: 6 944 584 parameters (with BN running statistics), 3.88 MiB, 62.4 % top-1.
"""

from __future__ import annotations

import torch
from timm.models import register_model
from torch import nn

from ._timm import ClassifierHead, strip_factory_kwargs
from .binary_densenet import Transition  # BN, max-pool, ReLU, 1x1 conv: the same in both families

GROWTH = 64


class DenseBlock(nn.Module):
    def __init__(self, in_ch: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(in_ch)
        self.conv = nn.Conv2d(in_ch, GROWTH, 3, 1, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.conv(self.norm(x))], dim=1)


class ImprovementBlock(nn.Module):
    def __init__(self, in_ch: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(in_ch)
        self.conv = nn.Conv2d(in_ch, GROWTH, 3, 1, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.conv(self.norm(x))
        return torch.cat([x[:, : -w.shape[1]], x[:, -w.shape[1] :] + w], dim=1)


class MeliusNet(ClassifierHead, nn.Module):
    def __init__(
        self,
        blocks: tuple[int, ...] = (4, 5, 4, 4),
        transitions: tuple[int, ...] = (160, 224, 256),
        in_chans: int = 3,
        num_classes: int = 1000,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if len(transitions) != len(blocks) - 1:
            raise ValueError("MeliusNet needs one transition width between sections")
        self.num_classes = num_classes
        self.stem = nn.Sequential()
        for name, module in (
            ("conv", nn.Conv2d(in_chans, 32, 3, 2, 1, bias=False)),
            ("bn", nn.BatchNorm2d(32)),
            ("act", nn.ReLU()),
            ("conv1", nn.Conv2d(32, 32, 3, 1, 1, groups=4, bias=False)),
            ("bn1", nn.BatchNorm2d(32)),
            ("act1", nn.ReLU()),
            ("conv2", nn.Conv2d(32, 64, 3, 1, 1, groups=8, bias=False)),
            ("bn2", nn.BatchNorm2d(64)),
            ("act2", nn.ReLU()),
            ("pool", nn.MaxPool2d(2, 2, ceil_mode=True)),
        ):
            self.stem.add_module(name, module)
        ch = 64
        self.features = nn.Sequential()
        for i, n in enumerate(blocks):
            section = nn.Sequential()
            for j in range(n):
                section.add_module(f"dense{j + 1}", DenseBlock(ch))
                ch += GROWTH
                section.add_module(f"improve{j + 1}", ImprovementBlock(ch))
            self.features.add_module(f"section{i + 1}", section)
            if i < len(transitions):
                self.features.add_module(f"transition{i + 1}", Transition(ch, transitions[i]))
                ch = transitions[i]
        self.num_features = ch
        self.norm = nn.BatchNorm2d(ch)
        self.act = nn.ReLU()
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(ch, num_classes)
        self.pretrained_cfg = {"first_conv": "stem.conv", "classifier": "fc", "architecture": "meliusnet22"}
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.features(self.stem(x))))


@register_model
def meliusnet22(pretrained: bool = False, **kwargs) -> MeliusNet:
    return MeliusNet(blocks=(4, 5, 4, 4), transitions=(160, 224, 256), **strip_factory_kwargs(kwargs))

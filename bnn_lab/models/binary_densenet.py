"""BinaryDenseNet (Bethge et al., "Training Competitive Binary Neural Networks from Scratch",
BMXNet-v2 / arXiv:1906.08637), registered in timm's registry.

Layout as the paper and larq-zoo define it: a full-precision 7x7/2 stem + 3x3/2 max-pool,
dense blocks of layers BN -> activation -> 3x3 conv (growth rate filters) whose output is
concatenated to the input (no bottleneck: the N-filter conv of DenseNet becomes two N/2
layers, hence a growth rate of 64 with more layers), transitions BN -> max-pool ->
activation -> 1x1 conv (full precision) that divide the channels by a larger reduction
rate, then BN -> activation -> global pooling -> classifier.

In full precision the activation is ReLU; the surgery pass replaces it (by default with
identity, so the binary conv sees sign(BN(x)) as in the paper).

Configurations (initial filters 64, growth 64):
- densenet28: blocks (6, 6, 6, 5), reductions (2.7, 2.7, 2.2)
- densenet37: blocks (6, 8, 12, 6), reductions (3.3, 3.3, 4)
- densenet45: blocks (6, 12, 14, 8), reductions (2.7, 3.3, 4)
Published ImageNet top-1 (larq-zoo reproductions): 60.91 %, 62.89 %, 64.59 %.
"""

from __future__ import annotations

import torch
from timm.models import register_model
from torch import nn

from ._timm import ClassifierHead, strip_factory_kwargs


class DenseLayer(nn.Module):
    def __init__(self, in_ch: int, growth: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(in_ch)
        self.act = nn.ReLU()
        self.conv = nn.Conv2d(in_ch, growth, 3, 1, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.conv(self.act(self.norm(x)))], dim=1)


class Transition(nn.Module):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(in_ch)
        self.pool = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.act = nn.ReLU()
        self.conv = nn.Conv2d(in_ch, out_ch, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.act(self.pool(self.norm(x))))


class BinaryDenseNet(ClassifierHead, nn.Module):
    def __init__(
        self,
        blocks: tuple[int, ...] = (6, 6, 6, 5),
        reductions: tuple[float, ...] = (2.7, 2.7, 2.2),
        growth_rate: int = 64,
        initial_filters: int = 64,
        in_chans: int = 3,
        num_classes: int = 1000,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if len(reductions) != len(blocks) - 1:
            raise ValueError("BinaryDenseNet needs one reduction per transition")
        self.num_classes = num_classes
        self.stem = nn.Sequential()
        self.stem.add_module("conv", nn.Conv2d(in_chans, initial_filters, 7, 2, 3, bias=False))
        self.stem.add_module("norm", nn.BatchNorm2d(initial_filters))
        self.stem.add_module("act", nn.ReLU())
        self.stem.add_module("pool", nn.MaxPool2d(3, 2, 1))
        ch = initial_filters
        self.features = nn.Sequential()
        for i, n in enumerate(blocks):
            block = nn.Sequential()
            for j in range(n):
                block.add_module(f"layer{j + 1}", DenseLayer(ch, growth_rate))
                ch += growth_rate
            self.features.add_module(f"block{i + 1}", block)
            if i < len(reductions):
                out = int(ch // reductions[i])
                self.features.add_module(f"transition{i + 1}", Transition(ch, out))
                ch = out
        self.num_features = ch
        self.norm = nn.BatchNorm2d(ch)
        self.act = nn.ReLU()
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(ch, num_classes)
        self.pretrained_cfg = {"first_conv": "stem.conv", "classifier": "fc", "architecture": "binary_densenet"}
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.features(self.stem(x))))


_CONFIGS = {
    28: ((6, 6, 6, 5), (2.7, 2.7, 2.2)),
    37: ((6, 8, 12, 6), (3.3, 3.3, 4.0)),
    45: ((6, 12, 14, 8), (2.7, 3.3, 4.0)),
}


def _make(depth: int, **kwargs) -> BinaryDenseNet:
    kwargs = strip_factory_kwargs(kwargs)
    blocks, reductions = _CONFIGS[depth]
    model = BinaryDenseNet(blocks=blocks, reductions=reductions, **kwargs)
    model.pretrained_cfg["architecture"] = f"binary_densenet{depth}"
    return model


@register_model
def binary_densenet28(pretrained: bool = False, **kwargs) -> BinaryDenseNet:
    return _make(28, **kwargs)


@register_model
def binary_densenet37(pretrained: bool = False, **kwargs) -> BinaryDenseNet:
    return _make(37, **kwargs)


@register_model
def binary_densenet45(pretrained: bool = False, **kwargs) -> BinaryDenseNet:
    return _make(45, **kwargs)

"""QuickNet (larq-zoo's QuickNet family, Plumerai), registered in timm's registry.

Layout as larq-zoo defines it:
- stem (full precision): 3x3/2 conv to C/4 -> BN -> ReLU -> 3x3/2 depthwise conv -> BN
  (no affine) -> 1x1 conv to C -> BN, with C the first section's width;
- residual blocks: x + BN(ReLU(binary 3x3 conv(x))), the conv's input binarized by the
  surgery (sign of the real-valued residual stream);
- where the width changes, a transition: ReLU -> 2x2 max-pool (stride 1) -> fixed 3x3
  blur-pool (binomial [1, 2, 1] x [1, 2, 1] / 16, stride 2, depthwise, not trained) ->
  1x1 conv (full precision) -> BN;
- ReLU -> global average pool -> classifier (full precision).

Two deviations, neither changing a parameter or a feature-map size at 224 px: the stride-1
max-pool pads the bottom/right border (larq's is unpadded, one pixel smaller, which the
stride-2 blur-pool then rounds to the same size), so tiny inputs keep at least one pixel;
binary convs pad with 0 (larq pads binary inputs with +1).

Configurations (blocks per section, widths):
- quicknet_small: (4, 4, 4, 4), (32, 64, 256, 512) - 12 655 688 parameters, 4.00 MB
- quicknet:       (4, 4, 4, 4), (64, 128, 256, 512) - 13 234 088 parameters, 4.17 MB
- quicknet_large: (6, 8, 12, 6), (64, 128, 256, 512) - 23 342 248 parameters, 5.40 MB
(larq-zoo's table; its counts include BN running statistics and larq's MB are MiB.)
Published ImageNet top-1: 59.4 %, 63.3 %, 66.9 %.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.models import register_model
from torch import nn

from ._timm import ClassifierHead, strip_factory_kwargs


class BlurPool(nn.Module):
    """Fixed anti-aliasing filter (binomial 3x3, sum 1) applied per channel with stride 2
    ("Making Convolutional Networks Shift-Invariant Again"); a buffer, not a parameter."""

    def __init__(self, channels: int, stride: int = 2) -> None:
        super().__init__()
        k = torch.tensor([1.0, 2.0, 1.0])
        kernel = torch.outer(k, k) / 16
        self.register_buffer("kernel", kernel.expand(channels, 1, 3, 3).clone(), persistent=False)
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.kernel.to(x.dtype), stride=self.stride, padding=1, groups=x.shape[1])


class ResidualBlock(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, 1, 1, bias=False)
        self.act = nn.ReLU()
        self.bn = nn.BatchNorm2d(ch, momentum=0.1, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bn(self.act(self.conv(x)))


class Transition(nn.Module):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.act = nn.ReLU()
        self.pool = nn.MaxPool2d(2, 1)
        self.blur = BlurPool(in_ch)
        self.conv = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.pad(self.act(x), (0, 1, 0, 1), value=float("-inf")))
        return self.bn(self.conv(self.blur(x)))


class QuickNet(ClassifierHead, nn.Module):
    def __init__(
        self,
        blocks: tuple[int, ...] = (4, 4, 4, 4),
        widths: tuple[int, ...] = (64, 128, 256, 512),
        in_chans: int = 3,
        num_classes: int = 1000,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if len(blocks) != len(widths) or widths[0] % 4:
            raise ValueError("QuickNet needs one width per section, the first divisible by 4")
        self.num_classes = num_classes
        c0 = widths[0]
        self.stem = nn.Sequential()
        self.stem.add_module("conv", nn.Conv2d(in_chans, c0 // 4, 3, 2, 1, bias=False))
        self.stem.add_module("bn", nn.BatchNorm2d(c0 // 4))
        self.stem.add_module("act", nn.ReLU())
        self.stem.add_module("dw", nn.Conv2d(c0 // 4, c0 // 4, 3, 2, 1, groups=c0 // 4, bias=False))
        self.stem.add_module("dw_bn", nn.BatchNorm2d(c0 // 4, affine=False))
        self.stem.add_module("pw", nn.Conv2d(c0 // 4, c0, 1, bias=False))
        self.stem.add_module("pw_bn", nn.BatchNorm2d(c0))
        self.sections = nn.Sequential()
        ch = c0
        for i, (n, w) in enumerate(zip(blocks, widths)):
            section = nn.Sequential()
            if w != ch:
                section.add_module("transition", Transition(ch, w))
                ch = w
            for j in range(n):
                section.add_module(f"block{j + 1}", ResidualBlock(ch))
            self.sections.add_module(f"section{i + 1}", section)
        self.num_features = ch
        self.act = nn.ReLU()
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(ch, num_classes)
        self.pretrained_cfg = {"first_conv": "stem.conv", "classifier": "fc", "architecture": "quicknet"}
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.sections(self.stem(x)))


_CONFIGS = {
    "quicknet_small": ((4, 4, 4, 4), (32, 64, 256, 512)),
    "quicknet": ((4, 4, 4, 4), (64, 128, 256, 512)),
    "quicknet_large": ((6, 8, 12, 6), (64, 128, 256, 512)),
}


def _make(name: str, **kwargs) -> QuickNet:
    blocks, widths = _CONFIGS[name]
    model = QuickNet(blocks=blocks, widths=widths, **strip_factory_kwargs(kwargs))
    model.pretrained_cfg["architecture"] = name
    return model


@register_model
def quicknet_small(pretrained: bool = False, **kwargs) -> QuickNet:
    return _make("quicknet_small", **kwargs)


@register_model
def quicknet(pretrained: bool = False, **kwargs) -> QuickNet:
    return _make("quicknet", **kwargs)


@register_model
def quicknet_large(pretrained: bool = False, **kwargs) -> QuickNet:
    return _make("quicknet_large", **kwargs)

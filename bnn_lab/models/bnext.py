"""BNext (Guo et al. 2022, "Join the High Accuracy Club on ImageNet with A Binary Neural Network
Ticket"), registered in timm's registry: ``bnext_tiny``, ``bnext_small``, ``bnext_middle``,
``bnext_large``.

MobileNetV1's layout (Tiny: 32 -> 1024 channels) of blocks, each an ELM-attention unit (3x3)
followed by a 1x1 binary feed-forward unit (two, concatenated, where the channels double). A
unit, for input x (AvgPool(2) on the shortcut paths where the 3x3 conv has stride 2):

    y   = PReLU(BN(conv(sign(x + b))))          the binary branch, b a learned per-channel bias
    m   = s x + (1 - s) y                        information recoupling, per-channel s in [0, 1] (init 0.5)
    y   = sigmoid-SE(m) * y                      squeeze-and-excite gate (real 1x1 convs, ratio 8)
    out = BN(y * r) + r,  r = PReLU(x)           "scale" units (even block index)
    out = BN(y) + x                              "bias" units (odd block index, and every 1x1 unit)

The order conv -> BN -> PReLU in the binary branch is that of the authors' released code.
The stem (3x3/2 conv + BN, no activation), the SE gates and the classifier are real: the
surgery keeps the stem and the classifier (its default policy) and the gates (``real_layers``).
The binary convs are plain ``nn.Conv2d`` here; the surgery turns them into binary layers and
the ``estimator`` gives sign(x + b) (``ste`` with ``clip: 1.5`` is the authors' HardSign).
``width`` scales every width (``arch.kwargs.width=0.125``: a BNext-Tiny of 4 -> 128 channels,
for small data and quick checks).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.models import register_model
from torch import nn

from ._timm import ClassifierHead, strip_factory_kwargs

# channels after the stem and after each block (MobileNetV1's 13 blocks for tiny and small)
WIDTHS = {
    "tiny": (32, 64, 128, 128, 256, 256, *[512] * 6, 1024, 1024),
    "small": (48, 96, 192, 192, 384, 384, *[768] * 6, 1536, 1536),
    "middle": (48, 96, *[192] * 4, *[384] * 4, *[768] * 8, *[1536] * 4),
    "large": (64, 128, *[256] * 4, *[512] * 4, *[1024] * 16, *[2048] * 4),
}


class LearnableBias(nn.Module):
    """x + b with a learned per-channel b (the threshold of the binarization that follows)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias


class SqueezeExcite(nn.Module):
    """sigmoid(W2 relu(W1 mean_hw(x) + b1) + b2), a per-channel gate in (0, 1)."""

    def __init__(self, channels: int, ratio: int = 8) -> None:
        super().__init__()
        hidden = max(channels // ratio, 1)
        self.reduce = nn.Conv2d(channels, hidden, 1)
        self.expand = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return torch.sigmoid(self.expand(F.relu(self.reduce(s))))


def _pool(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """AvgPool(2) of a shortcut, cut to the strided conv's output size (odd input sizes)."""
    x = F.avg_pool2d(x, 2, ceil_mode=True)
    return x[..., : like.shape[-2], : like.shape[-1]]


class BNextUnit(nn.Module):
    """One binary conv with its ELM attention (module docstring); ``scale``: the multiplicative
    shortcut r = PReLU(x), else the additive one."""

    def __init__(self, channels: int, kernel_size: int, stride: int = 1, scale: bool = False) -> None:
        super().__init__()
        self.stride, self.scale = stride, scale
        self.shift = LearnableBias(channels)
        self.conv = nn.Conv2d(channels, channels, kernel_size, stride, kernel_size // 2, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.act = nn.PReLU(channels)
        self.recouple = nn.Parameter(torch.full((1, channels, 1, 1), 0.5))
        self.gate = SqueezeExcite(channels)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut_act = nn.PReLU(channels) if scale else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn1(self.conv(self.shift(x))))
        shortcut = x if self.shortcut_act is None else self.shortcut_act(x)
        if self.stride > 1:
            x, shortcut = _pool(x, y), _pool(shortcut, y)
        if self.training:  # s stays in [0, 1] (clamped in place, as the latent weights are)
            with torch.no_grad():
                self.recouple.clamp_(0.0, 1.0)
        s = self.recouple
        y = self.gate(s * x + (1 - s) * y) * y
        if self.scale:
            return self.bn2(y * shortcut) + shortcut
        return self.bn2(y) + shortcut


class BNextBlock(nn.Module):
    """ELM-attention unit (3x3, ``stride``), then the 1x1 feed-forward unit(s): one where the
    channels stay, two concatenated where they double."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, scale: bool) -> None:
        super().__init__()
        if out_ch not in (in_ch, 2 * in_ch):
            raise ValueError("BNext blocks keep or double the channels")
        self.attention = BNextUnit(in_ch, 3, stride, scale)
        self.ffn = nn.ModuleList(BNextUnit(in_ch, 1) for _ in range(out_ch // in_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attention(x)
        return torch.cat([unit(x) for unit in self.ffn], dim=1)


class BNext(ClassifierHead, nn.Module):
    real_layers = (r".*\.gate\.(reduce|expand)",)  # kept real by the surgery: the SE gates

    def __init__(
        self,
        widths=WIDTHS["tiny"],
        in_chans: int = 3,
        num_classes: int = 1000,
        width: float = 1.0,
        drop_rate: float = 0.0,
        architecture: str = "bnext_tiny",
    ) -> None:
        super().__init__()
        first = max(int(round(widths[0] * float(width))), 1)
        widths = [first * w // widths[0] for w in widths]  # every width is the first times a power of 2
        self.num_classes = num_classes
        self.stem = nn.Sequential()
        self.stem.add_module("conv", nn.Conv2d(in_chans, widths[0], 3, 2, 1, bias=False))
        self.stem.add_module("bn", nn.BatchNorm2d(widths[0]))
        blocks = []
        for i in range(1, len(widths)):
            # stride 2 where the width grows, except into the first block's width
            stride = 2 if widths[i] != widths[i - 1] and i > 1 else 1
            blocks.append(BNextBlock(widths[i - 1], widths[i], stride, scale=i > 1 and i % 2 == 0))
        self.blocks = nn.Sequential(*blocks)
        self.num_features = widths[-1]
        self.final_act = nn.PReLU(widths[-1])
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(widths[-1], num_classes)
        self.pretrained_cfg = {"first_conv": "stem.conv", "classifier": "fc", "architecture": architecture}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_act(self.blocks(self.stem(x)))


def _bnext(size: str, kwargs: dict) -> BNext:
    return BNext(WIDTHS[size], architecture=f"bnext_{size}", **strip_factory_kwargs(kwargs))


@register_model
def bnext_tiny(pretrained: bool = False, **kwargs) -> BNext:
    return _bnext("tiny", kwargs)


@register_model
def bnext_small(pretrained: bool = False, **kwargs) -> BNext:
    return _bnext("small", kwargs)


@register_model
def bnext_middle(pretrained: bool = False, **kwargs) -> BNext:
    return _bnext("middle", kwargs)


@register_model
def bnext_large(pretrained: bool = False, **kwargs) -> BNext:
    return _bnext("large", kwargs)

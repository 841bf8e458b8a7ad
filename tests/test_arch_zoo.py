"""Every `arch` option x {1W1A, BWN, fp} x {28x28x1, 32x32x3}: builds through the composed
Hydra config, runs forward and backward, and binarizes exactly the layers its layout says."""

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from torch import nn

from bnn_lab.assembly import build_model
from bnn_lab.layers import BinaryConv2d, BinaryLinear

CONF = str(Path(__file__).resolve().parents[1] / "conf")

# binary layers by the architecture's layout (first conv, classifier and, where the
# option says so, 1x1 downsampling convs stay full precision)
EXPECTED_BINARY = {
    "resnet20": 18 + 2,  # 9 blocks x 2 convs + 2 shortcut convs (binary: keep_downsample=false)
    "resnet18": 8 * 2,  # 8 basic blocks x 2 convs; 3 downsample convs FP
    "resnet34": 16 * 2,
    "bireal18": 8 * 2,  # 16 convs, each with its own shortcut
    "bnext_tiny": 13 + 8 + 2 * 5,  # ReActNet-A's conv layout; SE gates real
    "bnext_small": 13 + 8 + 2 * 5,
    "densenet": 6 + 6 + 6 + 5,  # BinaryDenseNet28's dense layers; transitions FP
    "densenet28": 23,
    "densenet37": 6 + 8 + 12 + 6,
    "densenet45": 6 + 12 + 14 + 8,
    "reactnet": 13 + 8 + 2 * 5,  # 13 3x3 convs, 1x1 convs: 8 blocks keep width, 5 double it (two 1x1)
    "vgg_small": 5,  # 6 convs, the first FP
    "quicknet_small": 16,  # 4 sections x 4 residual blocks; stem and transitions FP
    "quicknet": 16,
    "quicknet_large": 6 + 8 + 12 + 6,
    "meliusnet22": 2 * (4 + 5 + 4 + 4),  # a dense and an improvement conv per block
    "bimlp_small": 6 * 5,  # 6 binary units a block (3 branches, projection, 2 FCs), 5 blocks
    "bimlp_tiny": 6 * 10,
}
DOWNSAMPLE_FP = {
    "resnet18": 3,
    "resnet34": 3,
    "bireal18": 3,
    "densenet": 3,
    "densenet28": 3,
    "densenet37": 3,
    "densenet45": 3,
    "quicknet_small": 3,
    "quicknet": 3,
    "quicknet_large": 3,
    "meliusnet22": 3,
    "bimlp_small": 3,
    "bimlp_tiny": 3,
}
ARCH_KEEP = {"quicknet_small": 2, "quicknet": 2, "quicknet_large": 2, "meliusnet22": 2}  # stem convs after the first


def composed(arch: str, mode: str, data: str):
    overrides = [f"arch={arch}", f"data={data}"]
    overrides.append(f"precision={mode}")
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)], ids=["28x28x1", "32x32x3"])
@pytest.mark.parametrize("mode", ["1w1a", "bwn", "fp"])
@pytest.mark.parametrize("arch", sorted(EXPECTED_BINARY))
def test_arch_option(arch, mode, shape):
    cfg = composed(arch, mode, "fashion_mnist" if shape[0] == 1 else "cifar10")
    torch.manual_seed(0)
    model, report = build_model(cfg, in_chans=shape[0], num_classes=10, img_size=shape[1])
    out = model(torch.randn(2, *shape))
    assert out.shape == (2, 10)
    out.sum().backward()
    binary = [m for m in model.modules() if isinstance(m, (BinaryConv2d, BinaryLinear))]
    if mode == "fp":
        assert report is None and not binary
        return
    assert len(binary) == EXPECTED_BINARY[arch] == len(report.binarized)
    assert all(m.binary_inputs == (mode == "1w1a") for m in binary)
    reasons = list(report.kept.values())
    assert reasons.count("first layer") == 1 and reasons.count("classifier") == 1
    assert reasons.count("downsample") == DOWNSAMPLE_FP.get(arch, 0)
    assert reasons.count("policy.keep") == ARCH_KEEP.get(arch, 0)  # the option's arch.keep
    classifier = model.get_classifier()
    assert type(classifier) is nn.Linear  # FP classifier
    first = dict(model.named_modules())[[k for k, v in report.kept.items() if v == "first layer"][0]]
    assert type(first) is nn.Conv2d and first.stride == (1, 1)  # small stem for small inputs


def test_timm_option_converts_any_timm_model():
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(config_name="config", overrides=["arch=timm", "arch.name=resnet10t"])
    model, report = build_model(cfg, in_chans=1, num_classes=10, img_size=28)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert len(report.binarized) == 4 * 2 + 2  # resnet10t: 4 basic blocks and a 3-conv deep stem (2 binary)

"""The surgery pass converts exactly what the policy says, and binary layers compute
conv(sign(x), sign(w)) as a hand-written float reference does."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bnn_lab.layers import BinaryConv2d, BinaryLinear
from bnn_lab.models import create
from bnn_lab.surgery import binarize


def sign(t):
    return torch.where(t >= 0, 1.0, -1.0)


def binary_names(model):
    return sorted(n for n, m in model.named_modules() if isinstance(m, (BinaryConv2d, BinaryLinear)))


def test_resnet20_default_policy_counts():
    model = create("resnet20", 3, 10, 32)
    report = binarize(model, "ste", {"activation": "hardtanh"})
    # 9 blocks x 2 3x3 convs + 2 downsample 1x1 convs; conv1 and fc stay FP
    assert len(report.binarized) == 20 == len(binary_names(model))
    assert report.kept == {"conv1": "first layer", "fc": "classifier"}
    assert isinstance(model.conv1, nn.Conv2d) and not isinstance(model.conv1, BinaryConv2d)
    assert type(model.fc) is nn.Linear
    # every ReLU replaced: stem + 2 per block
    assert len(report.activations) == 19
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())


def test_keep_downsample_and_regex():
    model = create("resnet20", 3, 10, 32)
    report = binarize(model, "ste", {"keep_downsample": True, "keep": [r"layer3\.2\.conv\d"]})
    assert len(report.binarized) == 20 - 2 - 2
    assert {k for k, v in report.kept.items() if v == "downsample"} == {
        "layer2.0.downsample.0",
        "layer3.0.downsample.0",
    }
    assert {k for k, v in report.kept.items() if v == "policy.keep"} == {"layer3.2.conv1", "layer3.2.conv2"}


def test_keep_nothing_binarizes_first_and_last_too():
    model = create("resnet20", 3, 10, 32)
    report = binarize(model, "ste", {"keep_first": False, "keep_last": False})
    assert len(report.binarized) == 22 and isinstance(model.fc, BinaryLinear)


def test_unknown_policy_names_are_errors():
    with pytest.raises(ValueError, match="matches no"):
        binarize(create("resnet20", 3, 10, 32), "ste", {"keep": ["no_such_layer"]})
    with pytest.raises(ValueError, match="valid keys"):
        binarize(create("resnet20", 3, 10, 32), "ste", {"keep_firts": True})
    with pytest.raises(ValueError, match="valid estimators"):
        binarize(create("resnet20", 3, 10, 32), "nope")


def test_binary_conv_forward_matches_hand_reference_and_reuses_weights():
    torch.manual_seed(0)
    conv = nn.Conv2d(5, 7, 3, stride=2, padding=1, bias=True)
    weight = conv.weight
    model = nn.Sequential(nn.Conv2d(5, 5, 1), conv, nn.Flatten(), nn.LazyLinear(3))
    model(torch.randn(1, 5, 9, 9))
    binarize(model, "ste", {"keep_first": True, "keep_last": True})
    layer = model[1]
    assert isinstance(layer, BinaryConv2d) and layer.weight is weight
    x = torch.randn(4, 5, 9, 9)
    expected = F.conv2d(sign(x), sign(weight), bias=None, stride=2, padding=1) + conv.bias.view(1, -1, 1, 1)
    assert torch.allclose(layer(x), expected, atol=1e-5)


def test_bwn_keeps_real_inputs_and_xnor_scale():
    torch.manual_seed(0)
    lin = nn.Linear(6, 4, bias=False)
    model = nn.Sequential(nn.Linear(6, 6), lin, nn.Linear(4, 2))
    binarize(model, "ste", scale="xnor", input_mode="real")
    x = torch.randn(3, 6)
    alpha = lin.weight.abs().mean(1)
    assert torch.allclose(model[1](x), (x @ sign(lin.weight).T) * alpha, atol=1e-6)


def test_gradient_reaches_latent_weights_through_the_estimator():
    model = create("resnet20", 1, 10, 8)
    binarize(model, "ste", {"activation": "hardtanh"})
    model(torch.randn(2, 1, 8, 8)).sum().backward()
    assert model.layer1[0].conv1.weight.grad is not None
    assert model.layer1[0].conv1.weight.grad.abs().sum() > 0


def test_second_pass_keeps_already_binary_layers():
    model = create("resnet20", 3, 10, 32)
    binarize(model, "ste", {}, scale="learned")
    model.layer1[0].conv1.scale.alpha.data.fill_(3.0)
    report = binarize(model, "ste", {}, scale="learned")
    assert not report.binarized
    assert model.layer1[0].conv1.scale.alpha.eq(3.0).all()


def test_generic_timm_vit_binarizes_linears_and_reports_what_it_left():
    model = create("vit_tiny_patch16_224", 3, 10, 32, img_size=32, patch_size=4, depth=2)
    report = binarize(model, "ste", {})
    assert "blocks.0.attn.qkv" in report.binarized and "blocks.1.mlp.fc2" in report.binarized
    assert report.kept["patch_embed.proj"] == "first layer" and report.kept["head"] == "classifier"
    assert "<root>" in report.left_alone  # cls_token / pos_embed are parameters of the model itself
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)

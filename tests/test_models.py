"""Architectures come from timm.create_model, with a small stem for small inputs."""

import pytest
import torch
from torch import nn

from bnn_lab.errors import UserError
from bnn_lab.models import create


@pytest.mark.parametrize("name", ["resnet20", "resnet18", "binary_densenet28"])
@pytest.mark.parametrize("shape,classes", [((1, 28, 28), 10), ((3, 32, 32), 100), ((1, 8, 8), 10)])
def test_forward_backward_shapes(name, shape, classes):
    model = create(name, in_chans=shape[0], num_classes=classes, input_size=shape[1])
    out = model(torch.randn(2, *shape))
    assert out.shape == (2, classes)
    out.sum().backward()


def test_small_stem_on_timm_resnet():
    model = create("resnet18", 1, 10, 28)
    assert model.conv1.stride == (1, 1) and model.conv1.kernel_size == (3, 3)
    assert isinstance(model.maxpool, nn.Identity)
    big = create("resnet18", 3, 1000, 224)
    assert big.conv1.stride == (2, 2) and isinstance(big.maxpool, nn.MaxPool2d)


def test_registered_models_are_in_timm_registry():
    import timm

    assert {"resnet20", "binary_densenet28", "binary_densenet37", "binary_densenet45"} <= set(timm.list_models())


def test_unknown_model_is_a_user_error_with_suggestions():
    with pytest.raises(UserError, match="resnet18"):
        create("resnet18x", 3, 10, 32)


def test_resnet20_parameter_count_by_hand():
    # conv1 3x3x3x16, 9 blocks of two 3x3 convs, two 1x1 shortcuts, BN (2 per channel), fc
    # stage 1: six 16->16 convs; stages 2, 3: one widening conv then five square ones
    convs = (
        3 * 9 * 16
        + 6 * 9 * 16 * 16
        + (9 * 16 * 32 + 5 * 9 * 32 * 32)
        + (9 * 32 * 64 + 5 * 9 * 64 * 64)
        + 16 * 32
        + 32 * 64
    )
    bns = 2 * (16 + 6 * 16 + 6 * 32 + 32 + 6 * 64 + 64)
    fc = 64 * 10 + 10
    model = create("resnet20", 3, 10, 32)
    assert sum(p.numel() for p in model.parameters()) == convs + bns + fc == 272474

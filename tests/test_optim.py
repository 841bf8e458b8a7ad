"""Optimizer groups, latent-weight clipping and the warm-up + cosine schedule."""
import math

import pytest
import torch

from bnn_lab.models import create
from bnn_lab.surgery import binarize
from bnn_lab.training.callbacks import LatentClip
from bnn_lab.training.optim import build_optimizer, warmup_cosine


def binary_resnet20():
    model = create("resnet20", 1, 10, 8)
    binarize(model, "ste", {"activation": "hardtanh"})
    return model


def test_latent_binary_weights_get_their_own_weight_decay():
    model = binary_resnet20()
    opt = build_optimizer(model, {"name": "sgd", "lr": 0.1, "weight_decay": 5e-4, "latent_weight_decay": 0.0})
    groups = {g["name"]: g for g in opt.param_groups}
    assert groups["latent_binary"]["weight_decay"] == 0.0 and groups["real"]["weight_decay"] == 5e-4
    latent_ids = {id(p) for p in groups["latent_binary"]["params"]}
    assert id(model.layer1[0].conv1.weight) in latent_ids
    assert id(model.conv1.weight) not in latent_ids and id(model.fc.weight) not in latent_ids
    assert len(latent_ids) == 20


def test_unknown_optimizer_lists_valid_ones():
    with pytest.raises(ValueError, match="adam, adamw, sgd"):
        build_optimizer(binary_resnet20(), {"name": "lamb"})


def test_latent_clip_callback():
    model = binary_resnet20()
    with torch.no_grad():
        model.layer1[0].conv1.weight.mul_(100)
        model.conv1.weight.mul_(100)
    LatentClip().on_train_batch_end(None, model, None, None, 0)
    assert model.layer1[0].conv1.weight.abs().max() <= 1.0
    assert model.conv1.weight.abs().max() > 1.0  # FP layers are not clipped


def test_warmup_cosine_by_hand():
    f = warmup_cosine(total_steps=110, warmup_steps=10, min_factor=0.0)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f(110) == pytest.approx(0.0, abs=1e-12)

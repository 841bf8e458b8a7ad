"""Optimizer groups, latent-weight clipping, the warm-up + cosine schedule, and one run with
two optimizers (a Bop-shaped sign-flip optimizer on the latent binary weights)."""

import copy
import math

import pytest
import sign_flip_optimizer  # noqa: F401  (registers sign_flip)
import torch
import torch.nn.functional as F

from bnn_lab.models import create
from bnn_lab.optim import GroupedOptimizer, build_optimizer, latent_parameters
from bnn_lab.schedulers import warmup_cosine
from bnn_lab.surgery import binarize
from bnn_lab.training.callbacks import LatentClip


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


def test_the_groups_are_declared_by_the_modules_and_survive_a_copy():
    """Binary layers declare their latent weights, RBONN's scale its step size's factor
    (ParameterRoles); a deep copy of the model (what a teacher or a previous stage is) keeps
    both, where marks set on the tensors were lost."""
    torch.manual_seed(0)
    model = create("resnet20", 1, 10, 8)
    binarize(model, "ste", {"activation": "hardtanh"}, scale={"name": "rbonn", "u_lr_factor": 0.25})
    twin = copy.deepcopy(model)
    for net in (model, twin):
        opt = build_optimizer(net, {"name": "sgd", "lr": 0.1})
        by_name = {(g["name"], g.get("lr_factor")): g for g in opt.param_groups}
        assert len(by_name[("latent_binary", None)]["params"]) == 20
        steps = by_name[("real", 0.25)]
        assert steps["lr"] == pytest.approx(0.025) and len(steps["params"]) == 20
        assert {id(p) for p in steps["params"]} == {id(m.scale.u) for m in net.modules() if hasattr(m, "scale")}


def test_unknown_optimizer_lists_valid_ones():
    with pytest.raises(ValueError, match="valid optimizers: adam, adamw, bop, sgd"):
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


def _step(model, opt, x, y):
    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss

    return opt.step(closure)


def test_grouped_optimizer_steps_each_group_as_its_own_optimizer_would():
    """Adam on the real-valued parameters, the sign-flip test optimizer on the latent binary
    weights: the same numbers as a plain Adam over those parameters and the flip rule by hand."""
    torch.manual_seed(0)
    model = binary_resnet20()
    twin = copy.deepcopy(model)
    cfg = {
        "name": "adam",
        "lr": 0.01,
        "latent_weight_decay": 0.0,
        "latent": {"name": "sign_flip", "lr": 0.5, "threshold": 1e-4},
    }
    opt = build_optimizer(model, cfg)
    assert isinstance(opt, GroupedOptimizer) and [g["name"] for g in opt.param_groups] == ["real", "latent_binary"]
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))

    latent_ids = {id(p) for p in latent_parameters(model.modules())}
    marked = {n for n, p in model.named_parameters() if id(p) in latent_ids}
    real = [p for n, p in twin.named_parameters() if n not in marked]
    latent = [p for n, p in twin.named_parameters() if n in marked]
    adam = torch.optim.Adam([{"params": real, "weight_decay": 0.0}], lr=0.01)
    adam.zero_grad()
    F.cross_entropy(twin(x), y).backward()
    expected = [
        torch.where(((0.5 * p.grad).abs() > 1e-4) & (torch.sign(p.grad) == torch.sign(p)), -p, p).detach()
        for p in latent
    ]
    adam.step()
    _step(model, opt, x, y)

    mine = dict(model.named_parameters())
    for name, p in twin.named_parameters():
        if name not in marked:
            assert torch.equal(mine[name], p), name
    got = [p for n, p in model.named_parameters() if n in marked]
    assert all(torch.equal(g, e) for g, e in zip(got, expected))
    assert any(not torch.equal(g, p) for g, p in zip(got, latent)), "some signs must flip"
    assert all(torch.equal(g.abs(), p.abs()) for g, p in zip(got, latent))  # flips keep the magnitudes


def test_grouped_optimizer_state_round_trip_continues_identically():
    torch.manual_seed(0)
    model = binary_resnet20()
    cfg = {"name": "adam", "lr": 0.01, "latent": {"name": "sign_flip", "lr": 0.5, "threshold": 1e-4}}
    opt = build_optimizer(model, cfg)
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    _step(model, opt, x, y)
    twin = binary_resnet20()
    twin.load_state_dict(model.state_dict())
    restored = build_optimizer(twin, cfg)
    restored.load_state_dict(copy.deepcopy(opt.state_dict()))
    assert restored.parts[1].state is restored.state and restored.parts[1].param_groups[0] is restored.param_groups[1]
    _step(model, opt, x, y)
    _step(twin, restored, x, y)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), twin.parameters()))


def test_latent_optimizer_options_are_checked():
    with pytest.raises(ValueError, match="optimizer 'sign_flip' takes no option 'betas'; its options: lr, threshold"):
        build_optimizer(binary_resnet20(), {"name": "adam", "latent": {"name": "sign_flip", "betas": (0.9, 0.99)}})
    with pytest.raises(ValueError, match="valid optimizers: adam, adamw, bop, sgd"):
        build_optimizer(binary_resnet20(), {"name": "adam", "latent": {"lr": 0.1}})

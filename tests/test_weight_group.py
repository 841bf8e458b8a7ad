"""Weights binarized together (bnn_lab.layers.weight_group) against each layer on its own.

The reference is the same net with the group detached, each layer calling its estimator: the
grouped forward must give the same loss and the same gradient for every parameter, bit for
bit (eager backward, ``fused=False``), also after optimizer steps have changed the weights and
when the layers' estimators are at different points of their schedules (two groups). Each
test also checks how many grouped calls were made, so that a group that silently did nothing
would fail.
"""

import copy

import pytest
import torch
import torch.nn.functional as F
from binary_nets import small_binary_net

from bnn_lab.estimators.fda import FDA
from bnn_lab.layers import BinaryMixin
from bnn_lab.surgery import binarize

GEN = torch.Generator().manual_seed(3)
X = torch.randn(8, 4, 8, 8, generator=GEN)
Y = torch.randint(0, 10, (8,), generator=GEN)


@pytest.fixture
def calls(monkeypatch):
    """Sizes of the groups that FDA.binarize_group was called with, in order."""
    sizes = []
    original = FDA.binarize_group.__func__

    def counted(cls, estimators, weights):
        sizes.append(len(weights))
        return original(cls, estimators, weights)

    monkeypatch.setattr(FDA, "binarize_group", classmethod(counted))
    return sizes


def fda_net(estimator="fda", progress=0.3):
    """Three binary convs (all with FDA's noise on their weights) and a float classifier."""
    net = small_binary_net(estimator, progress, convs=3)
    with torch.no_grad():  # a noise module that is not zero (fc2 starts at zero)
        for m in net.modules():
            if isinstance(m, FDA) and m.noise is not None:
                m.noise.fc2.weight.normal_(0, 0.3, generator=GEN)
    return net


def train_steps(net, steps=3):
    """Loss and gradients of each step, Adam updating the weights in between."""
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    out = []
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(X), Y)
        loss.backward()
        out.append((loss.detach(), [p.grad.clone() for p in net.parameters()]))
        opt.step()
    return out


def assert_same_steps(got, expected):
    for (loss, grads), (loss_ref, grads_ref) in zip(got, expected):
        assert torch.equal(loss, loss_ref)
        assert all(torch.equal(g, r) for g, r in zip(grads, grads_ref))


def test_grouped_weights_equal_per_layer_bit_for_bit(calls):
    net = fda_net()
    alone = copy.deepcopy(net)
    alone._weight_group.detach(alone)
    expected = train_steps(alone)
    assert calls == [1] * 9  # each layer on its own, three steps
    calls.clear()
    assert_same_steps(train_steps(net), expected)
    assert calls == [3, 3, 3]  # one group of the three layers per step


def test_layers_at_different_schedule_points_form_two_groups(calls):
    net = fda_net()
    convs = [m for m in net.modules() if isinstance(m, BinaryMixin)]
    convs[0].weight_estimator.set_progress(0.6)  # other alpha and number of terms than convs[1]
    alone = copy.deepcopy(net)
    alone._weight_group.detach(alone)
    expected = train_steps(alone, steps=2)
    calls.clear()
    assert_same_steps(train_steps(net, steps=2), expected)
    assert calls == [1, 2, 1, 2]


def test_evaluation_mode_binarizes_each_layer_to_plus_minus_one(calls):
    net = fda_net().eval()
    seen = []
    hooks = [
        m.register_forward_hook(lambda m, a, o: seen.append(m.binary_weight()))
        for m in net.modules()
        if isinstance(m, BinaryMixin)
    ]
    net(X)
    for h in hooks:
        h.remove()
    assert calls == [] and len(seen) == 3
    assert all(set(w.unique().tolist()) <= {-1.0, 1.0} for w in seen)


def test_a_copy_groups_its_own_layers(calls):
    net = fda_net()
    twin = copy.deepcopy(net)
    twin_group = twin._weight_group
    assert twin_group is not net._weight_group
    assert {id(m) for m in twin_group.layers} == {id(m) for m in twin.modules() if isinstance(m, BinaryMixin)}
    before = F.cross_entropy(net(X), Y)
    with torch.no_grad():
        for m in twin.modules():
            if isinstance(m, BinaryMixin):
                m.weight.neg_()  # every sign flips
    after = F.cross_entropy(twin(X), Y)
    assert torch.equal(F.cross_entropy(net(X), Y), before) and not torch.equal(after, before)
    assert calls == [3, 3, 3]


def test_results_are_dropped_when_the_forward_pass_fails():
    net = fda_net()
    last = [m for m in net.modules() if isinstance(m, BinaryMixin)][-1]

    def fail(module, args, output):
        raise RuntimeError("stop here")

    handle = last.register_forward_hook(fail)
    with pytest.raises(RuntimeError, match="stop here"):
        net(X)
    handle.remove()
    assert net._weight_group.results is None
    assert last.binary_weight().grad_fn is not None  # binarized on its own, from the current weight


def test_binarizing_again_keeps_one_group():
    net = fda_net()
    first = net._weight_group
    binarize(net, "fda", {"keep_first": False, "keep_last": True})  # every conv is already binary
    assert net._weight_group is not first
    assert len(net._forward_pre_hooks) == 1 and len(net._forward_hooks) == 1
    assert all(m._weight_group is net._weight_group for m in net.modules() if isinstance(m, BinaryMixin))


@pytest.mark.parametrize("fused", [False, True])
def test_a_pickled_model_still_groups(tmp_path, calls, fused):
    net = fda_net({"name": "fda", "fused": fused})
    torch.save(net, tmp_path / "net.pt")
    loaded = torch.load(tmp_path / "net.pt", weights_only=False)
    expected = F.cross_entropy(net(X), Y)
    calls.clear()
    assert torch.equal(F.cross_entropy(loaded(X), Y), expected)
    assert calls == [3]


def test_group_weights_false_leaves_each_layer_alone(calls):
    net = fda_net()
    binarize(net, "fda", {"keep_first": False, "keep_last": True}, group_weights=False)
    assert "_weight_group" not in net.__dict__ and not net._forward_pre_hooks and not net._forward_hooks
    net(X)
    assert calls == [1, 1, 1]


@pytest.mark.parametrize("value", [True, False])
def test_config_switch(value):
    from hydra import compose, initialize_config_dir

    from bnn_lab.assembly import build_model
    from bnn_lab.cli.train import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["estimator=fda", f"binarize.group_weights={str(value).lower()}"])
    model, _ = build_model(cfg, 1, 10, 28)
    group = model.__dict__.get("_weight_group")
    assert (group is not None) == value
    if value:
        assert len(group.layers) == len([m for m in model.modules() if isinstance(m, BinaryMixin)]) > 10


@pytest.mark.compile
def test_grouped_weights_in_a_compiled_loop_match_eager(monkeypatch):
    """Fused estimators: the concatenated weights (here forced above the size threshold) take
    the compiled loop with the polynomial ratio; loss and gradients stay within float32
    rounding of the eager per-layer path (checked at the third step). The compiled loop may sum
    in another order (vector width, threads), and three steps of training carry that to a few
    1e-5 relative on single gradient elements (2.96e-5 seen in a full CI run); a wrong formula
    differs by orders of magnitude more."""
    from bnn_lab.estimators import fusion

    monkeypatch.setattr(fusion, "MIN_NUMEL", 1000)  # the three weights together: 1,440 elements
    fused = fda_net({"name": "fda", "fused": True})
    eager = fda_net({"name": "fda", "fused": False})
    eager.load_state_dict(fused.state_dict())  # the same noise matrices (drawn from one generator)
    eager._weight_group.detach(eager)
    (loss, grads), (loss_ref, grads_ref) = train_steps(fused)[-1], train_steps(eager)[-1]
    torch.testing.assert_close(loss, loss_ref, rtol=1e-6, atol=0)
    for g, r in zip(grads, grads_ref):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-7)
    assert fusion.fuse(*_noise_functions()).compiled is not None  # the loop did compile


def _noise_functions():
    from bnn_lab.estimators.fda import fourier_polynomial_vjp, fourier_vjp
    from bnn_lab.estimators.fda_noise import with_sine

    return with_sine(fourier_vjp), with_sine(fourier_polynomial_vjp)

"""The float rewrites of the inference graph: a BatchNorm folded into the float convolution before
it, residual additions and clamping activations in place only where nothing else reads the tensor."""

import torch
import torch.fx as fx
from torch import nn

from bnn_lab.export.float_rewrites import (
    add_into,
    drop_identities,
    fold_float_batchnorms,
    inplace_float_ops,
    pool_before_activation,
)


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.act = nn.Hardtanh()
        self.shared = nn.Conv2d(8, 8, 1)  # its output is read twice: never overwritten
        self.side = nn.Conv2d(8, 8, 1)
        self.act2 = nn.ReLU()
        self.view = nn.Identity()  # returns its input: not a fresh tensor

    def forward(self, x):
        x = self.act(self.bn(self.stem(x)))
        s = self.shared(x)
        y = self.act2(s + x)  # s has two readers: a new sum, which act2 may overwrite
        z = self.side(x) + y  # side's output is read once: in place
        v = self.view(z)
        return torch.cat([self.act(v + s), z * 2], 1)  # v aliases z (read again): a new tensor


def _trained_bn(net):
    net.train()
    with torch.no_grad():
        net(torch.randn(16, 3, 6, 6) * 3 + 1)
    return net.eval()


def test_only_unshared_fresh_tensors_are_overwritten_and_the_output_is_unchanged():
    torch.manual_seed(0)
    net = _trained_bn(_Net())
    x = torch.randn(4, 3, 6, 6)
    with torch.no_grad():
        ref = net(x)
    gm = fx.symbolic_trace(net)
    assert fold_float_batchnorms(gm) == 1
    assert all(n.target != "bn" for n in gm.graph.nodes)
    inplace = inplace_float_ops(gm)
    gm.recompile()
    adds = [n for n in gm.graph.nodes if n.target is add_into]
    assert [n.args[0].target for n in adds] == ["side"]  # only the addition on side's output
    # act2 overwrites the new sum s + x; act is called twice (once on the folded stem): not in place
    assert inplace == 2 and gm.act2.inplace and not gm.act.inplace
    with torch.no_grad():
        out = gm(x)
    # the folded BatchNorm changes float rounding only; every value the eager net gives, kept
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    # without the Identity the sum v + s reads z directly: still not overwritten (z is read again)
    gm = fx.symbolic_trace(net)
    assert drop_identities(gm) == 1 and inplace_float_ops(gm) == 2
    gm.recompile()
    with torch.no_grad():
        torch.testing.assert_close(gm(x), ref, atol=1e-5, rtol=1e-5)


def test_a_folded_batchnorm_is_the_formula():
    torch.manual_seed(1)
    conv, bn = nn.Conv2d(2, 3, 3, bias=False), nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-1, 1)
    gm = fx.symbolic_trace(nn.Sequential(conv, bn).eval())
    assert fold_float_batchnorms(gm) == 1
    g = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    torch.testing.assert_close(gm.get_submodule("0").weight, conv.weight * g.view(-1, 1, 1, 1))
    torch.testing.assert_close(gm.get_submodule("0").bias, bn.bias - bn.running_mean * g)


class _Stem(nn.Module):
    def __init__(self, act: nn.Module, read_twice: bool) -> None:
        super().__init__()
        self.conv, self.act, self.pool, self.read_twice = nn.Conv2d(3, 4, 3), act, nn.MaxPool2d(3, 2, 1), read_twice

    def forward(self, x):
        a = self.act(self.conv(x) - 0.5)
        p = self.pool(a)
        return (p, a.sum()) if self.read_twice else p


def test_a_max_pooling_moves_before_its_clamping_activation_exactly():
    torch.manual_seed(2)
    x = torch.randn(2, 3, 11, 9)
    for act in (nn.Hardtanh(-0.5, 0.25), nn.ReLU(), nn.ReLU6()):
        net = _Stem(act, read_twice=False).eval()
        gm = fx.symbolic_trace(net)
        assert pool_before_activation(gm) == 1
        gm.recompile()
        order = [n.target for n in gm.graph.nodes if n.op == "call_module"]
        assert order == ["conv", "pool", "act"]
        with torch.no_grad():
            ref = net(x)
            assert torch.equal(gm(x), ref)  # exact, clamped values at the border windows included
            lo, hi = act(torch.tensor(-9.0)), act(torch.tensor(9.0))
            assert ((ref == lo) | (ref == hi)).any() and ((ref > lo) & (ref < hi)).any()  # both branches
    gm = fx.symbolic_trace(_Stem(nn.ReLU(), read_twice=True))  # the activation's output is read again
    assert pool_before_activation(gm) == 0

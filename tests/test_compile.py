"""torch.compile of binarized nets (marked ``compile``: inductor compiles C++ on CPU, the
module takes about a minute; deselect with ``-m "not compile"``).

- every estimator traces into one graph (``fullgraph=True``) with the AOT-autograd backend:
  its gradients equal the eager ones, also after the training progress changes (the schedule
  constants are graph inputs, not baked-in values), with at most one recompilation for that;
- the inductor backend (fused C++ kernels) for the clipped STE and FDA gives the eager
  gradients within float32 rounding;
- ``fused=True`` estimators (one compiled loop for the backward) against their eager backward,
  FDA's noise path included.
"""

import copy

import pytest
import torch
import torch._dynamo.testing
import torch.nn.functional as F
from binary_nets import set_progress, small_binary_net
from torch import nn

from bnn_lab import estimators

pytestmark = pytest.mark.compile

GEN = torch.Generator().manual_seed(1)
X = torch.randn(8, 4, 8, 8, generator=GEN)
Y = torch.randint(0, 10, (8,), generator=GEN)


def grads_of_step(net: nn.Module, model: nn.Module) -> list[torch.Tensor]:
    net.zero_grad(set_to_none=True)
    F.cross_entropy(model(X), Y).backward()
    return [p.grad.clone() for p in net.parameters()]


def assert_close_grads(got, expected, rtol):
    for g, e in zip(got, expected):
        assert float((g - e).norm() / e.norm().clamp_min(1e-12)) <= rtol


@pytest.mark.parametrize("name", estimators.names())
def test_one_graph_and_eager_gradients(name):
    torch._dynamo.reset()
    net, eager = small_binary_net(name), small_binary_net(name)
    counter = torch._dynamo.testing.CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(net, backend=counter, fullgraph=True)
    for p in (0.3, 0.5, 0.7, 0.9):  # FDA: 11, 13, 15, 17 terms
        set_progress(net, p)
        set_progress(eager, p)
        assert_close_grads(grads_of_step(net, compiled), grads_of_step(eager, eager), rtol=1e-6)
    assert counter.frame_count <= 2  # the first change makes the constants dynamic inputs


@pytest.mark.parametrize("name", ["ste", "fda"])
def test_inductor_matches_eager(name):
    torch._dynamo.reset()
    net = small_binary_net(name)
    eager = copy.deepcopy(net)
    set_progress(net, 0.3)
    set_progress(eager, 0.3)
    compiled = torch.compile(net)
    assert_close_grads(grads_of_step(net, compiled), grads_of_step(eager, eager), rtol=1e-5)


FUSABLE = {"approx": {}, "swish": {}, "ede": {}, "fda": {"noise": False}}


@pytest.mark.parametrize("name", sorted(FUSABLE))
def test_fused_backward_matches_eager(name):
    """``fused=True`` (one compiled loop) gives the eager backward on an activation-sized
    tensor; FDA also in bfloat16 and channels_last."""
    cases = [(torch.float32, torch.contiguous_format)]
    if name == "fda":
        cases += [(torch.bfloat16, torch.contiguous_format), (torch.float32, torch.channels_last)]
    for dtype, fmt in cases:
        x0 = (torch.randn(16, 32, 16, 16, generator=GEN) * 0.8).to(dtype).contiguous(memory_format=fmt)
        dy = torch.randn(x0.shape, generator=GEN).to(dtype).contiguous(memory_format=fmt)
        grads = []
        for fused in (True, False):
            est = estimators.build(name, fused=fused, **FUSABLE[name])
            est.set_progress(0.4)
            x = x0.clone().requires_grad_(True)
            est(x).backward(dy)
            grads.append(x.grad)
        assert grads[0].dtype == dtype
        tol = 1e-2 if dtype == torch.bfloat16 else 1e-5
        err = float((grads[0].float() - grads[1].float()).abs().max() / grads[1].float().abs().max())
        assert err < tol, (dtype, fmt, err)


def test_fused_noise_backward_matches_eager():
    """FDA's noise path on a weight large enough for the compiled loop (64 x 2048 rows):
    values and the gradients of w, fc1 and fc2 equal the eager ones."""
    w0 = torch.randn(64, 2048, generator=GEN) * 0.05
    dy = torch.randn(64, 2048, generator=GEN)
    results = []
    for fused in (True, False):
        torch.manual_seed(3)
        est = estimators.build("fda", features=2048, fused=fused).train()
        with torch.no_grad():
            est.noise.fc2.weight.normal_(0, 0.3, generator=GEN.manual_seed(4))
        est.set_progress(0.4)
        w = w0.clone().requires_grad_(True)
        out = est(w)
        out.backward(dy)
        results.append([out.detach(), w.grad, est.noise.fc1.weight.grad, est.noise.fc2.weight.grad])
    for got, ref in zip(*results):
        assert float((got - ref).abs().max() / ref.abs().max()) < 1e-5

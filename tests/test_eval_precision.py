"""Validation and test run in float32 under mixed-precision training, so that the float model
and the bit-packed one (exact integer sums) compute the same function."""

import torch
from binary_nets import small_binary_net

from bnn_lab.training.module import ClassificationModule


def _net():
    torch.manual_seed(0)
    net = small_binary_net("ste").eval()
    # large weights behind the binary conv: its integer sums reach the magnitudes bf16 rounds
    with torch.no_grad():
        net[-1].weight.mul_(50)
    return net


def test_eval_logits_are_float32_under_bf16_autocast():
    net = _net()
    module = ClassificationModule(net, 10, {"name": "adam", "lr": 1e-3}, {"name": "none"})
    x = torch.randn(16, 4, 8, 8)
    reference = net(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = net(x)
        evaluated = module._eval_logits(x)
    assert under_autocast.dtype == torch.bfloat16 and not torch.equal(under_autocast.float(), reference)
    assert evaluated.dtype == torch.float32 and torch.equal(evaluated, reference)

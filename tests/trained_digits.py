"""Binary ResNet-20s trained briefly on the digits (plain loop, seconds), shared by the
deployment tests: packed, ONNX and float evaluation must agree on their test split."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from bnn_lab.data import build_datamodule
from bnn_lab.models import create
from bnn_lab.surgery import binarize


@functools.cache
def digits_splits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train x, train y, test x, test y) of the digits as the runs see them."""
    dm = build_datamodule("digits", on_device=False)
    dm.setup("fit")
    dm.setup("test")
    train = [torch.cat(t) for t in zip(*dm.train_dataloader())]
    test = [torch.cat(t) for t in zip(*dm.test_dataloader())]
    return train[0], train[1], test[0], test[1]


@functools.cache
def trained_digits_model(
    estimator: str = "ste", scale: str = "none", activation: str = "hardtanh", epochs: int = 2
) -> torch.nn.Module:
    x, y, _, _ = digits_splits()
    torch.manual_seed(0)
    model = create("resnet20", 1, 10, 8)
    binarize(model, estimator, {"activation": activation, "keep_downsample": False}, scale=scale)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(32):
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


@torch.no_grad()
def logits(model: torch.nn.Module, x: torch.Tensor, batch: int = 128) -> torch.Tensor:
    return torch.cat([model(part) for part in x.split(batch)])

"""Accuracy of a (packed) model on a data loader, without Lightning."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def evaluate(
    model: nn.Module, loader, progress: bool = False, device: torch.device | str | None = None
) -> dict[str, float]:
    """Top-1 (and top-5 with at least 5 classes) accuracy over ``loader``; with ``device`` the
    batches are moved to it (the model must already be there)."""
    model.eval()
    correct = correct5 = total = 0
    batches = loader
    if progress:
        from tqdm import tqdm

        batches = tqdm(loader, desc="packed eval", leave=False)
    for x, y in batches:
        if device is not None:
            x, y = x.to(device), y.to(device)
        logits = model(x)
        correct += int((logits.argmax(1) == y).sum())
        if logits.shape[1] >= 5:
            correct5 += int((logits.topk(5, dim=1).indices == y[:, None]).any(1).sum())
        total += len(y)
    out = {"acc": correct / max(total, 1)}
    if correct5:
        out["acc5"] = correct5 / total
    return out

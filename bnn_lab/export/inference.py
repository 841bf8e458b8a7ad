"""One call from a packed file to a model that predicts: what ``bnn-lab-eval`` and a run's
``packed/test_acc`` evaluate, so that what is measured is what a user deploys."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from .graph import build_inference_graph
from .io import load_packed, packed_file


def inference_model(packed: nn.Module) -> nn.Module:
    """A packed model (``pack_model``) as its inference graph (``build_inference_graph``: bits between
    binary convolutions, BatchNorms folded, residual epilogues, kernels on the work-stealing pool),
    in eval mode; its predictions are the float model's."""
    graph, _ = build_inference_graph(packed)
    return graph.eval()


def load_for_inference(path: str | Path, backend: str = "auto") -> tuple[nn.Module, dict]:
    """(inference model, metadata) of a packed file or a run directory holding one::

        model, meta = load_for_inference("outputs/<date>/<run>")
        logits = model(images)          # (N, in_chans, img_size, img_size) float32

    The file is read as data and checked (``load_packed``); ``meta`` has ``arch``, ``num_classes``,
    ``img_size``, ``in_chans`` and the run's configuration."""
    packed, meta = load_packed(packed_file(path), backend=backend)
    return inference_model(packed), meta

"""Packed evaluation equals float evaluation on every digits test image, for each output
scale and for RSign's learned thresholds (models trained on the digits, not random ones)."""

import pytest
import torch
from trained_digits import digits_splits, logits, trained_digits_model

from bnn_lab.export import pack_model
from bnn_lab.export.graph import build_inference_graph

# ReCU and BiPer learn more slowly in this loop (Adam 1e-2, no schedule): 4 epochs, not 2, to
# pass the "trained" bar below (about 0.54 and 0.60 after 4)
EPOCHS = {"recu": 4, "biper": 4}
CASES = [
    ("ste", "none", "hardtanh"),
    ("ste", "xnor", "hardtanh"),
    ("ste", "learned", "hardtanh"),
    ("ste", "gating", "hardtanh"),
    ("rsign", "learned", "rprelu"),
    ("recu", "learned", "hardtanh"),
    ("biper", "learned", "hardtanh"),
]


@pytest.mark.slow  # seven short trainings: about three minutes on two cores
@pytest.mark.parametrize("estimator,scale,activation", CASES)
def test_packed_and_float_agree_on_every_test_image(estimator, scale, activation):
    model = trained_digits_model(estimator, scale, activation, EPOCHS.get(estimator, 2))
    _, _, x, y = digits_splits()
    ref = logits(model, x)
    assert (ref.argmax(1) == y).float().mean() > 0.5  # trained: chance is 0.1
    if estimator == "rsign":
        thresholds = [m.threshold for m in model.modules() if getattr(m, "threshold", None) is not None]
        assert thresholds and all(t.abs().max() > 1e-3 for t in thresholds)  # learned, not the initial 0
    packed, report = pack_model(model, backend="cpu")
    assert len(report.packed) == 20 and not report.kept_float
    out = logits(packed, x)
    assert torch.equal(out.argmax(1), ref.argmax(1))
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    # the inference graph (bits between convolutions, folded BatchNorms, fused residual epilogues)
    graph, graph_report = build_inference_graph(packed)
    assert (graph_report.fused_residuals > 0) == (scale != "gating")  # a gating scale keeps its modules
    # and, where no RPReLU sits between, the next conv's input bits from the same epilogue
    assert (graph_report.residual_bits > 0) == (scale != "gating" and activation == "hardtanh")
    out = logits(graph, x)
    assert torch.equal(out.argmax(1), ref.argmax(1))
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)

"""ONNX export: a trained digits model in standard operators gives onnxruntime the torch
model's predictions on the whole test split."""

import onnx
import pytest
import torch
from trained_digits import digits_splits, logits, trained_digits_model

from bnn_lab.errors import UserError
from bnn_lab.export import export_onnx
from bnn_lab.export.onnx import runtime_session

STANDARD = {
    "Add",
    "Clip",
    "Concat",
    "Constant",
    "Conv",
    "Flatten",
    "Gemm",
    "GlobalAveragePool",
    "GreaterOrEqual",
    "MatMul",
    "Mul",
    "Relu",
    "ReduceMean",
    "Reshape",
    "Sigmoid",
    "Sub",
    "Where",
    "Less",
    "Not",
    "BatchNormalization",
    "MaxPool",
    "AveragePool",
    "PRelu",
    "Squeeze",
    "Unsqueeze",
    "Shape",
    "Gather",
    "Identity",
}


@pytest.mark.slow  # the exactness test's trainings (cached within a session)
@pytest.mark.parametrize("estimator,scale,activation", [("ste", "gating", "hardtanh"), ("rsign", "learned", "rprelu")])
def test_onnxruntime_gives_the_torch_predictions_on_the_test_split(tmp_path, estimator, scale, activation):

    model = trained_digits_model(estimator, scale, activation)
    _, _, x, y = digits_splits()
    ref = logits(model, x)
    assert (ref.argmax(1) == y).float().mean() > 0.5
    path = export_onnx(model, tmp_path / "model.onnx", tuple(x.shape[1:]))
    graph = onnx.load(str(path)).graph
    ops = {node.op_type for node in graph.node}
    assert ops <= STANDARD and {"Conv", "Where"} <= ops, ops
    # binary convs: weights of +-1 only (the stem and the classifier stay real)
    signed = [
        init
        for init in graph.initializer
        if init.dims and len(init.dims) == 4 and set(onnx.numpy_helper.to_array(init).ravel().tolist()) == {-1.0, 1.0}
    ]
    assert len(signed) == 20
    session = runtime_session(path)
    out = torch.from_numpy(session.run(["logits"], {"image": x.numpy()})[0])  # the whole split, one batch
    assert torch.equal(out.argmax(1), ref.argmax(1))
    # onnxruntime's own float kernels (stem, BatchNorm, PReLU) round differently from torch's: an
    # activation within that rounding of a threshold can take the other sign and move an image's
    # logits; every other image has the torch logits to float precision
    close = ((out - ref).abs() <= 1e-4 + 1e-4 * ref.abs()).all(1)
    assert close.float().mean() >= 0.99


def test_a_layer_without_packed_form_is_refused_with_its_reason(tmp_path):
    from bnn_lab.models import create
    from bnn_lab.surgery import binarize

    model = create("resnet20", 1, 10, 8)
    binarize(model, "adabin", {})
    with pytest.raises(UserError, match=r"without a \+-1 form \(layer1\.0\.conv1: weights not \+-1"):
        export_onnx(model.eval(), tmp_path / "m.onnx", (1, 8, 8))
    assert not (tmp_path / "m.onnx").exists()

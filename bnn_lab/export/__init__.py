"""Deployment: bit-packed binary layers, packed-model files, packed evaluation."""

from .evaluate import evaluate
from .graph import build_inference_graph
from .inference import inference_model, load_for_inference
from .io import PACKED_FILE, load_packed, packed_file, read_metadata, save_packed
from .lce import LceUnsupported, export_lce, to_lce
from .onnx import export_onnx, onnx_form
from .pack import PackReport, pack_model
from .packed_layers import PackedBinaryConv2d, PackedBinaryLinear

__all__ = [
    "LceUnsupported",
    "PACKED_FILE",
    "PackReport",
    "PackedBinaryConv2d",
    "PackedBinaryLinear",
    "build_inference_graph",
    "evaluate",
    "export_lce",
    "export_onnx",
    "inference_model",
    "load_for_inference",
    "load_packed",
    "onnx_form",
    "pack_model",
    "packed_file",
    "read_metadata",
    "save_packed",
    "to_lce",
]

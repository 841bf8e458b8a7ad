"""The float engines a deploying user could run instead of the packed model, each a callable on a
float32 input: what ``bnn-lab-bench model`` times the packed graph against.

* ``torch``: torch eager, float32 (bfloat16 on CUDA).
* ``torch-folded``: torch with every BatchNorm folded into the convolution before it
  (``torch.fx.experimental.optimization.fuse``) and channels-last memory.
* ``onnxruntime``: the float network exported by ``torch.onnx`` (opset 17) and run by onnxruntime's
  CPU provider with the benchmark's threads (``intra_op_num_threads``; one inter-op thread; all graph
  optimizations), its other settings as onnxruntime ships them.

CPU only for the last two. Each engine's logits are checked against torch eager (``agree``).
"""

from __future__ import annotations

import copy
import io
import warnings
from collections.abc import Callable

import torch
from torch import nn

Engine = Callable[[torch.Tensor], object]


def torch_eager(model: nn.Module, example: torch.Tensor) -> Engine:
    return lambda x: model(x)


def torch_folded(model: nn.Module, example: torch.Tensor) -> Engine:
    from torch.fx.experimental.optimization import fuse

    folded = fuse(copy.deepcopy(model).eval()).to(memory_format=torch.channels_last)
    return lambda x: folded(x.contiguous(memory_format=torch.channels_last))


def onnxruntime_session(model: nn.Module, example: torch.Tensor) -> Engine:
    import onnxruntime as ort

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            model,
            (example,),
            buf,
            opset_version=17,
            dynamo=False,
            input_names=["x"],
            dynamic_axes={"x": {0: "batch"}},
        )
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(sess.run(None, {"x": x.numpy()})[0])


#: name -> builder(float model in eval mode, example input) -> engine
ENGINES: dict[str, Callable[[nn.Module, torch.Tensor], Engine]] = {
    "torch": torch_eager,
    "torch-folded": torch_folded,
    "onnxruntime": onnxruntime_session,
}
CPU_ONLY = ("torch-folded", "onnxruntime")


def build_engines(names: list[str], model: nn.Module, example: torch.Tensor) -> tuple[dict[str, Engine], dict]:
    """The named engines of ``model`` (an unknown name lists the valid ones) and, per engine, whether
    its predictions on ``example`` agree with torch eager's and the largest logit difference."""
    unknown = [n for n in names if n not in ENGINES]
    if unknown:
        raise ValueError(f"unknown float engine(s) {', '.join(unknown)}; valid: {', '.join(ENGINES)}")
    engines, checks = {}, {}
    with torch.no_grad():
        ref = model(example).float()
        for name in names:
            if example.device.type != "cpu" and name in CPU_ONLY:
                continue
            engine = ENGINES[name](model, example)
            out = torch.as_tensor(engine(example)).float().to(ref.device)
            engines[name] = engine
            checks[name] = {
                "same_predictions": bool(torch.equal(out.argmax(1), ref.argmax(1))),
                "max_abs_diff": round(float((out - ref).abs().max()), 6),
            }
    return engines, checks

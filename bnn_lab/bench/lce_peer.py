"""Larq Compute Engine as a peer in ``bnn-lab-bench model --lce-python PYTHON``: the packed model
exported for LCE (``bnn_lab.export.lce``) and timed by LCE's own interpreter, in another Python
whose environment has ``larq-compute-engine`` (it needs numpy < 2 and brings TensorFlow's
converter, so it lives apart from bnn-lab's). Only the interpreter is imported there.

LCE is timed in its own process, before and after bnn-lab's alternating blocks (the two results
give its spread over the run), with the benchmark's threads, batch 1, its optimized kernels
(``use_indirect_bgemm=True, use_xnnpack=True``)."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import torch
from torch import nn

from ..errors import UserError

#: the start of a program run by LCE's Python: its ``Interpreter`` imported without the package's
#: ``__init__``, which imports the converter's TensorFlow
IMPORT_INTERPRETER = """
import importlib.util, sys, types
spec = importlib.util.find_spec("larq_compute_engine")
if spec is None:
    sys.exit("larq_compute_engine is not installed in this Python")
pkg = types.ModuleType("larq_compute_engine")
pkg.__path__ = list(spec.submodule_search_locations)
sys.modules["larq_compute_engine"] = pkg
from larq_compute_engine.tflite.python.interpreter import Interpreter
"""

TIMER = (
    IMPORT_INTERPRETER
    + """
import json, statistics, time
import numpy as np
model, threads, repeats, warmup = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
it = Interpreter(open(model, "rb").read(), num_threads=threads, use_indirect_bgemm=True, use_xnnpack=True)
x = np.random.RandomState(0).randn(*it.input_shapes[0]).astype(np.float32)
for _ in range(warmup):
    it.predict(x)
times = []
for _ in range(repeats):
    t0 = time.perf_counter()
    it.predict(x)
    times.append((time.perf_counter() - t0) * 1e3)
q1, q2, q3 = statistics.quantiles(times, n=4, method="inclusive")
print(json.dumps({"ms": q2, "p25_ms": q1, "p75_ms": q3}))
"""
)


class LcePeer:
    """The packed model as an LCE file, timed by ``python`` (a path to an interpreter with LCE)."""

    def __init__(self, python: str, packed: nn.Module, input_shape) -> None:
        from ..export.lce import to_lce

        self.python = python
        self._dir = tempfile.TemporaryDirectory(prefix="bnn-lab-lce-")
        self.file = Path(self._dir.name) / "model.tflite"
        self.file.write_bytes(to_lce(packed, tuple(input_shape)))

    def time(self, repeats: int, warmup: int) -> dict:
        args = [self.python, "-c", TIMER, str(self.file), str(torch.get_num_threads()), str(repeats), str(warmup)]
        try:
            proc = subprocess.run(args, capture_output=True, text=True, timeout=900)
        except OSError as exc:
            raise UserError(f"--lce-python {self.python}: cannot run it ({exc})") from exc
        if proc.returncode != 0:
            raise UserError(f"--lce-python {self.python}: LCE's interpreter failed: {proc.stderr.strip()[-500:]}")
        return {k: round(v, 3) for k, v in json.loads(proc.stdout.strip().splitlines()[-1]).items()}

    def close(self) -> None:
        self._dir.cleanup()

"""Larq Compute Engine's own interpreter, as a peer to check exported files against.

LCE 0.16.0's wheel needs numpy < 2 and its package imports TensorFlow for the converter, so it
lives in a virtualenv of its own (``$BNN_LAB_LCE_PYTHON``, else created once under
``~/.cache/bnn-lab/peers/lce-0.16.0`` from the package registry), and the interpreter's extension
is loaded without the package's ``__init__``. :func:`lce_python` returns that venv's python, or
None with the reason it could not be made."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from bnn_lab.bench.lce_peer import IMPORT_INTERPRETER

VERSION = "0.16.0"
RUNNER = (
    IMPORT_INTERPRETER
    + """
import numpy as np
model, inputs, outputs = sys.argv[1:4]
it = Interpreter(open(model, "rb").read(), num_threads=1)
x = np.load(inputs)
np.save(outputs, np.concatenate([it.predict(x[i : i + 1]) for i in range(len(x))]))
"""
)


def lce_python() -> tuple[str | None, str]:
    """(python of a venv with LCE's interpreter, "") or (None, why not)."""
    given = os.environ.get("BNN_LAB_LCE_PYTHON")
    if given:
        return given, ""
    venv = Path.home() / ".cache" / "bnn-lab" / "peers" / f"lce-{VERSION}"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"lce-{VERSION}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one maker at a time (pytest-xdist workers)
        return _make(venv)


def _make(venv: Path) -> tuple[str | None, str]:
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    if marker.exists():
        return str(python), ""
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, capture_output=True)
        pip = [str(python), "-m", "pip", "install", "--quiet", "numpy<2", f"larq-compute-engine=={VERSION}"]
        proc = subprocess.run(pip, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"cannot make a virtualenv for larq-compute-engine: {exc}"
    if proc.returncode != 0:
        return None, f"larq-compute-engine=={VERSION} cannot be installed here: {proc.stderr.strip()[-300:]}"
    marker.touch()
    return str(python), ""


def run_lce(python: str, model: bytes, x_nhwc: np.ndarray, tmp: Path) -> np.ndarray:
    """LCE's interpreter's outputs for each image of ``x_nhwc`` (float32 N, H, W, C), one at a time."""
    (tmp / "model.tflite").write_bytes(model)
    np.save(tmp / "x.npy", np.ascontiguousarray(x_nhwc, dtype=np.float32))
    proc = subprocess.run(
        [python, "-c", RUNNER, str(tmp / "model.tflite"), str(tmp / "x.npy"), str(tmp / "y.npy")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return np.load(tmp / "y.npy")

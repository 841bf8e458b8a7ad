"""Pickles of plain data (CIFAR's batches): dicts, lists, strings, numbers and NumPy arrays.

``pickle.load`` calls whatever function a file names; this reader resolves only the few globals
that rebuild a NumPy array (:data:`ARRAY_GLOBALS`) and refuses every other one before it is
called, as :func:`~bnn_lab.files.load_checkpoint` does for torch files.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from .checkpoint import RefusedFile

ARRAY_GLOBALS = (
    {
        (module, name)
        for module in ("numpy.core.multiarray", "numpy._core.multiarray")
        for name in ("_reconstruct", "scalar")
    }
    | {(module, "_frombuffer") for module in ("numpy.core.numeric", "numpy._core.numeric")}
    | {("numpy", "ndarray"), ("numpy", "dtype")}
)


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ARRAY_GLOBALS:
            raise pickle.UnpicklingError(f"it would call {module}.{name}")
        return super().find_class(module, name)


def load_plain_pickle(path: str | Path, what: str = "file", encoding: str = "ASCII") -> Any:
    """The plain data in the pickle ``path``; :class:`RefusedFile` if it names anything else."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return _PlainUnpickler(f, encoding=encoding).load()
    except pickle.UnpicklingError as exc:
        raise RefusedFile(f"{what} {path} refused: {exc}, and it is read as data, never as code") from exc
    except Exception as exc:
        raise RefusedFile(f"{what} {path} cannot be read ({' '.join(str(exc).split())[:160]})") from exc

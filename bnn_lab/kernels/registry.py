"""Backend registry and the ``binary_matmul`` dispatcher.

A backend is a function ``fn(a_bits, b_bits, k) -> int32 (M, N)`` that receives
validated, contiguous int32 operands on one device, and optionally its own binary
convolution (a :class:`ConvImplementation`, :data:`CONV_BACKENDS`); a backend without one
convolves by gathering the patches for its matmul. Each built-in backend lives in its own
file and is imported on first use, so that ``import bnn_lab.kernels`` needs neither numba
nor triton.
"""

from __future__ import annotations

import importlib
import importlib.util
import operator
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .packing import WORD_BITS

BackendFn = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]


def _lazy(module: str, attr: str) -> Callable:
    """A function that imports ``module`` (relative to this package) the first time it is called."""

    def call(*args):
        return getattr(importlib.import_module(module, __package__), attr)(*args)

    call.__name__ = call.__qualname__ = attr
    call.__doc__ = f"Lazily imported ``{module}.{attr}``."
    return call


#: name -> backend function. ``auto`` is not an entry: it resolves to one of these.
BACKENDS: dict[str, BackendFn] = {
    "torch": _lazy(".backends.torch_ref", "binary_matmul_torch"),
    "cpu": _lazy(".backends.numba_cpu", "binary_matmul_cpu"),
    "triton": _lazy(".backends.triton_gpu", "binary_matmul_triton"),
}


@dataclass(frozen=True)
class ConvImplementation:
    """How a backend runs a binary convolution (``bnn_lab.kernels.conv``): ``run(x, packed weight,
    plan, n, epilogue, bits' pads)`` returns what the entry point promises (int32, float32, float32
    and bits, or bits); ``prepare(plan, packed weight, n, h, w, device)``, if given, adds the
    backend's layouts to a new plan (cached with the weight)."""

    run: Callable
    prepare: Callable | None = None


#: name -> the backend's own convolution; a backend not listed gathers the patches for its matmul
#: (``bnn_lab.kernels.conv.GATHERED``).
CONV_BACKENDS: dict[str, ConvImplementation] = {
    "cpu": ConvImplementation(_lazy(".conv", "numba_conv"), _lazy(".conv", "numba_plan")),
}


def register_backend(name: str, fn: BackendFn, conv: ConvImplementation | None = None) -> None:
    """Add (or replace) a backend ``fn(a_bits, b_bits, k) -> int32 (M, N)``, with its own binary
    convolution ``conv`` (None: convolutions gather the patches for ``fn``)."""
    if name == "auto":
        raise ValueError("'auto' is reserved")
    if conv is not None and not isinstance(conv, ConvImplementation):
        raise TypeError(f"conv must be a ConvImplementation, got {type(conv).__name__}")
    BACKENDS[name] = fn
    if conv is None:
        CONV_BACKENDS.pop(name, None)
    else:
        CONV_BACKENDS[name] = conv


def available_backends() -> list[str]:
    """Valid values for ``backend=`` (registered names plus ``"auto"``)."""
    return ["auto", *BACKENDS]


def has_numba() -> bool:
    return importlib.util.find_spec("numba") is not None


def has_triton() -> bool:
    return importlib.util.find_spec("triton") is not None


def resolve_backend(backend: str, device: torch.device) -> str:
    """Name of the backend that ``backend`` means for tensors on ``device``.

    ``auto``: ``triton`` on CUDA (``torch`` if triton is missing), ``cpu`` (numba) on
    CPU (``torch`` if numba is missing), ``torch`` anywhere else.
    Raises ``ValueError`` listing the valid names for an unknown backend.
    """
    if backend == "auto":
        if device.type == "cuda":
            return "triton" if has_triton() else "torch"
        if device.type == "cpu":
            return "cpu" if has_numba() else "torch"
        return "torch"
    if backend not in BACKENDS:
        raise ValueError(
            f"unknown binary_matmul backend {backend!r}; valid backends: "
            + ", ".join(repr(b) for b in available_backends())
        )
    return backend


def check_operands(a_bits: torch.Tensor, b_bits: torch.Tensor, k: int) -> None:
    """Validate packed operands for ``binary_matmul`` (raises ``TypeError``/``ValueError``)."""
    for name, t in (("a_bits", a_bits), ("b_bits", b_bits)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dtype != torch.int32:
            raise TypeError(f"{name} must be torch.int32 packed words (see pack_signs), got {t.dtype}")
        if t.dim() != 2:
            raise ValueError(f"{name} must be 2-D (rows, words), got shape {tuple(t.shape)}")
    if a_bits.shape[1] != b_bits.shape[1]:
        raise ValueError(
            f"a_bits and b_bits must have the same number of words, got {a_bits.shape[1]} and {b_bits.shape[1]}"
        )
    if a_bits.device != b_bits.device:
        raise ValueError(f"a_bits is on {a_bits.device} but b_bits is on {b_bits.device}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"k must be a non-negative int, got {k!r}")
    if k > a_bits.shape[1] * WORD_BITS:
        raise ValueError(f"k={k} is larger than {a_bits.shape[1]} words x 32 bits")


def binary_matmul(a_bits: torch.Tensor, b_bits: torch.Tensor, k: int, backend: str = "auto") -> torch.Tensor:
    """``sign(A) @ sign(B).T`` from packed rows, exactly, as int32.

    Args:
        a_bits: int32 ``(M, W)``, rows of ``A`` packed by :func:`pack_signs`.
        b_bits: int32 ``(N, W)``, rows of ``B`` packed the same way.
        k: the true row length ``K`` of ``A`` and ``B`` (``K <= 32 * W``; every bit
            past ``K`` must be 0 in both operands, as :func:`pack_signs` leaves them).
        backend: ``"auto"``, ``"torch"``, ``"cpu"`` (numba) or ``"triton"``, or any name
            added with :func:`register_backend`.

    Returns:
        int32 ``(M, N)`` on the operands' device with
        ``out[i, j] = K - 2 * popcount(a_bits[i] XOR b_bits[j])``.
    """
    name = resolve_backend(backend, a_bits.device if isinstance(a_bits, torch.Tensor) else torch.device("cpu"))
    if not isinstance(k, bool) and hasattr(k, "__index__"):
        k = operator.index(k)  # numpy / 0-d integer tensors
    check_operands(a_bits, b_bits, k)
    out = BACKENDS[name](a_bits.contiguous(), b_bits.contiguous(), k)
    return out

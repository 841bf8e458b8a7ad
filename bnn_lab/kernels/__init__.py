"""Packed binary kernels: sign packing, XNOR-popcount matmul and convolution.

With ``a, w`` in ``{-1, +1}^K`` stored as bits (bit 1 for +1, bit 0 for -1)::

    a . w = K - 2 * popcount(bits(a) XOR bits(w))

``sign(x)`` is +1 for ``x >= 0`` (including 0 and -0.0) and -1 otherwise, never 0.
Results are exact int32 and equal (``torch.equal``) to the float ``+-1`` reference.

Public API:

* :func:`pack_signs` / :func:`unpack_signs`: bit packing of the last dimension.
* :func:`binary_matmul`: ``sign(A) @ sign(B).T`` from packed rows; backends ``auto``,
  ``torch``, ``cpu`` (numba), ``triton`` (see :func:`available_backends`).
* :func:`binary_conv2d`: exact ``F.conv2d(sign(x), sign(w), ...)`` with zero padding, as int32,
  from a float activation and packed weights (:func:`pack_conv2d_weight`); one function per
  other output, each with its epilogue: :func:`binary_conv2d_affine` (float32,
  :class:`AffineEpilogue`), :func:`binary_conv2d_affine_bits` (float32 and the next layer's
  packed input), :func:`binary_conv2d_bits` (packed bits, :class:`ThresholdEpilogue`).
* :func:`max_pool2d_clamp`: max-pooling and a clamping activation in one pass, optionally with
  the next binary convolution's packed input; :func:`max_pool2d_clamp_by_image` the same for a
  batch whose images are made one at a time (on several threads).
"""

from . import reference
from .conv import (
    AffineEpilogue,
    PackedConv2dInput,
    PackedConv2dWeight,
    ThresholdEpilogue,
    binary_conv2d,
    binary_conv2d_affine,
    binary_conv2d_affine_bits,
    binary_conv2d_bits,
    conv_pads,
    pack_conv2d_input,
    pack_conv2d_weight,
)
from .packing import num_words, pack_signs, sign, unpack_signs
from .pool import max_pool2d_clamp, max_pool2d_clamp_by_image
from .registry import (
    BACKENDS,
    CONV_BACKENDS,
    ConvImplementation,
    available_backends,
    binary_matmul,
    register_backend,
    resolve_backend,
)

__all__ = [
    "AffineEpilogue",
    "BACKENDS",
    "CONV_BACKENDS",
    "ConvImplementation",
    "PackedConv2dInput",
    "PackedConv2dWeight",
    "ThresholdEpilogue",
    "available_backends",
    "binary_conv2d",
    "binary_conv2d_affine",
    "binary_conv2d_affine_bits",
    "binary_conv2d_bits",
    "binary_matmul",
    "conv_pads",
    "max_pool2d_clamp",
    "max_pool2d_clamp_by_image",
    "num_words",
    "pack_conv2d_input",
    "pack_conv2d_weight",
    "pack_signs",
    "reference",
    "register_backend",
    "resolve_backend",
    "sign",
    "unpack_signs",
]

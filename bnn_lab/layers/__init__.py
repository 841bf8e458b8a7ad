from .binary import BinaryConv2d, BinaryLinear, BinaryMixin
from .scaling import build_scale, scale_names

__all__ = ["BinaryConv2d", "BinaryLinear", "BinaryMixin", "build_scale", "scale_names"]

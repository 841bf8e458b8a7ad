from .binary import BinaryConv2d, BinaryLinear, BinaryMixin
from .scaling import SCALES, build_scale, register_scale, scale_names
from . import rbonn_scale  # noqa: F401  (registration)
from .weight_group import WeightGroup, attach_weight_group

__all__ = ["BinaryConv2d", "BinaryLinear", "BinaryMixin", "SCALES", "WeightGroup", "attach_weight_group",
           "build_scale", "register_scale", "scale_names"]

from .binary import BinaryConv2d, BinaryLinear, BinaryMixin
from .scaling import build_scale, scale_names
from .weight_group import WeightGroup, attach_weight_group

__all__ = ["BinaryConv2d", "BinaryLinear", "BinaryMixin", "WeightGroup", "attach_weight_group", "build_scale",
           "scale_names"]

from . import (
    imb_weight_norm,  # noqa: F401  (registration)
    rbonn_scale,  # noqa: F401  (registration)
)
from .binary import BinaryConv2d, BinaryLinear, BinaryMixin
from .param_roles import ParameterRoles
from .scaling import SCALES, Scale, build_scale, register_scale, scale_names
from .weight_group import WeightGroup, attach_weight_group
from .weight_norm import WEIGHT_NORMS, WeightNorm, build_weight_norm, register_weight_norm, weight_norm_names

__all__ = [
    "BinaryConv2d",
    "BinaryLinear",
    "BinaryMixin",
    "ParameterRoles",
    "Scale",
    "SCALES",
    "WEIGHT_NORMS",
    "WeightGroup",
    "WeightNorm",
    "attach_weight_group",
    "build_scale",
    "build_weight_norm",
    "register_scale",
    "register_weight_norm",
    "scale_names",
    "weight_norm_names",
]

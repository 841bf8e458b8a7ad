"""Architectures: timm models, plus the binary-network families timm lacks (registered
into timm's registry on import, one file per family)."""

from . import bimlp, binary_densenet, bireal, bnext, meliusnet, quicknet, reactnet, resnet_cifar, vgg_small  # noqa: F401  (registration)
from .factory import create
from .stem import first_conv_name, shrink_stem

__all__ = ["create", "first_conv_name", "shrink_stem"]

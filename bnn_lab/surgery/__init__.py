"""Module surgery: convert a float timm model into a binary one (``binarize``)."""

from .binarize import SurgeryReport, binarize
from .policy import ACTIVATIONS, Policy, is_downsample

__all__ = ["ACTIVATIONS", "Policy", "SurgeryReport", "binarize", "is_downsample"]

"""bnn-lab: train, compare and ship binary neural networks built from timm models."""

__version__ = "0.1.0"

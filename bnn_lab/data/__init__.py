"""Data modules (the ``data`` config group), one file each, registered by name."""
from . import cifar, digits, fashion_mnist, imagenet, synthetic  # noqa: F401  (registration)
from .base import BaseDataModule, InMemoryDataModule, resolve_root
from .registry import build_datamodule, dataset_names, register_dataset

__all__ = ["BaseDataModule", "InMemoryDataModule", "build_datamodule", "dataset_names", "register_dataset", "resolve_root"]

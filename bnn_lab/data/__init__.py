"""Data modules (the ``data`` config group), one file each, registered by name."""

from .. import config_resolvers  # noqa: F401  (${folder_name:...} in conf/data/image_folder.yaml)
from . import cifar, digits, fashion_mnist, image_folder, synthetic  # noqa: F401  (registration)
from .base import BaseDataModule, InMemoryDataModule, resolve_root
from .registry import build_datamodule, dataset_names, register_dataset

__all__ = [
    "BaseDataModule",
    "InMemoryDataModule",
    "build_datamodule",
    "dataset_names",
    "register_dataset",
    "resolve_root",
]

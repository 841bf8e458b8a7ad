"""OmegaConf resolvers that the configuration files use (registered on import).

``${folder_name:<path>}``: the last component of a path (``~/data/my_digits/`` -> ``my_digits``),
which names the runs of ``data=image_folder``.
"""

from __future__ import annotations

import os

from omegaconf import OmegaConf


def folder_name(path) -> str:
    return os.path.basename(os.path.abspath(os.path.expanduser(str(path)))) or "root"


if not OmegaConf.has_resolver("folder_name"):
    OmegaConf.register_new_resolver("folder_name", folder_name)

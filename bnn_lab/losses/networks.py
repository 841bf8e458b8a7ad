"""Trained networks that a loss term loads by path (a checkpoint file or a run directory), such
as the teachers of ``consecutive_kd``.

Building a network from a run's configuration belongs to a higher layer (``bnn_lab.assembly``),
which provides the loader here when it is imported, as every run imports it.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ..errors import UserError

Loader = Callable[[str, int], nn.Module]
_LOADER: list[Loader] = []


def provide_network_loader(loader: Loader) -> None:
    """``loader(path, img_size)`` returns the trained network of ``path`` in eval mode."""
    _LOADER[:] = [loader]


def load_network(path: str, img_size: int) -> nn.Module:
    if not _LOADER:
        raise UserError("no network loader: import bnn_lab.assembly before a loss term loads a network")
    return _LOADER[0](str(path), int(img_size))

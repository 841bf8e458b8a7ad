"""Checkpoints loaded as data, never as code.

A ``.ckpt``/``.pt`` file is a pickle, and a pickle can call any function while it is read. Here
every such file goes through ``torch.load(weights_only=True)``: tensors, numbers, strings and
the plain containers torch allows, plus :data:`ALLOWED`, the few other types bnn-lab's own
checkpoints hold. A file that asks for anything else is refused before that thing is called, in
one line that names it. ``trust=True`` (a file whose origin the user vouches for, through an
explicit option such as ``distill.teacher.trust=true``) loads it with the full pickle.
"""

from __future__ import annotations

import collections
import logging
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError

log = logging.getLogger(__name__)
# types beyond torch's weights-only defaults that bnn-lab's checkpoints may hold
ALLOWED: list[Any] = [collections.defaultdict, collections.OrderedDict]
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


class RefusedFile(UserError):
    """A checkpoint that would run code, or cannot be read, was not loaded."""


def allowed_globals() -> list[Any]:
    return list(ALLOWED)


def load_checkpoint(
    path: str | Path, *, what: str = "checkpoint", trust: bool = False, trust_hint: str = "", mmap: bool = False
) -> Any:
    """The object stored in ``path`` (on the CPU), read as data.

    ``what`` names the file in messages ("teacher checkpoint"); ``trust_hint`` says how the user
    can vouch for a refused file (the option that sets ``trust``); ``mmap``: tensors stay on disk
    until used (reading the step of a large checkpoint)."""
    path = Path(path)
    if trust:
        log.warning("loading %s %s with the full pickle (trusted: it may run code)", what, path)
    try:
        with torch.serialization.safe_globals(ALLOWED):
            return torch.load(path, map_location="cpu", weights_only=not trust, mmap=mmap)
    except pickle.UnpicklingError as exc:
        found = _GLOBAL.search(str(exc))
        asks = f"it would call {found.group(1)}" if found else "it holds objects other than tensors and plain data"
        vouch = f"; if you trust where it comes from, {trust_hint}" if trust_hint else ""
        raise RefusedFile(
            f"{what} {path} refused: {asks}, and a checkpoint is loaded as data, never as code "
            f"(re-save its state_dict with torch.save to share it){vouch}"
        ) from exc
    except FileNotFoundError as exc:
        raise RefusedFile(f"{what} {path} does not exist") from exc
    except Exception as exc:  # truncated, not a torch file, damaged archive
        raise RefusedFile(
            f"{what} {path} cannot be read ({' '.join(str(exc).split())[:160]}); "
            "it is damaged or not a torch checkpoint"
        ) from exc

"""Files read from elsewhere and files written by a run.

Read: checkpoints are loaded as data, never as code (:func:`load_checkpoint`); JSON files are
checked before use (:func:`read_json`). Written: every file a run must not lose is written whole
or not at all (:func:`atomic_write`), and a write that cannot complete says so in one line.
"""

from .atomic import WriteFailed, atomic_write, torch_save, write_json
from .checkpoint import RefusedFile, allowed_globals, load_checkpoint
from .json_file import read_json

__all__ = [
    "RefusedFile",
    "WriteFailed",
    "allowed_globals",
    "atomic_write",
    "load_checkpoint",
    "read_json",
    "torch_save",
    "write_json",
]

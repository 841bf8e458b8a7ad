"""JSON files of a run (``metrics.json``, caches) read with a one-line error for a damaged one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import UserError


class DamagedFile(UserError):
    """A file exists but does not hold what it should."""


def read_json(path: str | Path, what: str = "", required: tuple[str, ...] = ()) -> dict[str, Any]:
    """The object in ``path``; a file that is not a JSON object, or lacks one of ``required``,
    raises :class:`DamagedFile` naming it (``what``: what the file is, for the message)."""
    path = Path(path)
    label = f"{what} {path}" if what else str(path)
    try:
        obj = json.loads(path.read_bytes())
    except FileNotFoundError as exc:
        raise DamagedFile(f"{label} does not exist") from exc
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DamagedFile(
            f"{label} is damaged ({' '.join(str(exc).split())[:120]}); move it away or run again"
        ) from exc
    if not isinstance(obj, dict):
        raise DamagedFile(f"{label} holds a {type(obj).__name__}, not an object; move it away or run again")
    missing = [k for k in required if k not in obj]
    if missing:
        raise DamagedFile(f"{label} lacks {', '.join(missing)}; move it away or run again")
    return obj

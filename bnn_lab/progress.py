"""Progress bars only where someone watches them: on a terminal.

Redirected into a file (``make run > log``, a SLURM log) a bar is hundreds of carriage-return
updates in one line; there the run's log lines (one per epoch) say how far it is.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable


def is_terminal() -> bool:
    """stdout and stderr are both terminals."""
    return all(getattr(stream, "isatty", lambda: False)() for stream in (sys.stdout, sys.stderr))


def wanted(setting) -> bool:
    """``trainer.enable_progress_bar``: ``auto`` (bars on a terminal), true or false."""
    return is_terminal() if setting in (None, "auto") else bool(setting)


def progress_bar(items: Iterable, desc: str, min_total: int = 0) -> Iterable:
    """``items`` with a tqdm bar on a terminal when there are at least ``min_total`` of them."""
    total = len(items) if hasattr(items, "__len__") else None
    if not is_terminal() or (total is not None and total < min_total):
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, total=total, leave=False)

"""One-line errors for user mistakes; the traceback only with BNN_LAB_DEBUG=1."""
from __future__ import annotations

import contextlib
import os
import sys

from ..errors import UserError

EXIT_USER_ERROR = 2


def debug() -> bool:
    return os.environ.get("BNN_LAB_DEBUG", "") not in ("", "0", "false")


@contextlib.contextmanager
def user_errors(prog: str = "bnn-lab"):
    try:
        yield
    except UserError as exc:
        if debug():
            raise
        print(f"{prog}: error: {exc}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)

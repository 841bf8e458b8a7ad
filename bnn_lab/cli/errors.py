"""One-line errors for user mistakes; the traceback only with BNN_LAB_DEBUG=1."""

from __future__ import annotations

import contextlib
import os
import sys

from omegaconf.errors import OmegaConfBaseException

from ..errors import Preempted, UserError
from ..files.atomic import NO_ROOM

EXIT_USER_ERROR = 2


def debug() -> bool:
    return os.environ.get("BNN_LAB_DEBUG", "") not in ("", "0", "false")


@contextlib.contextmanager
def user_errors(prog: str = "bnn-lab"):
    try:
        yield
    except Preempted as exc:  # SIGTERM: the checkpoint is saved; one line, status 143
        print(f"{prog}: {exc.message}", file=sys.stderr, flush=True)
        sys.exit(exc.code)
    except (UserError, OmegaConfBaseException) as exc:
        if debug():
            raise
        message = " ".join(str(exc).split())  # one line, whatever the exception printed
        print(f"{prog}: error: {message}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except OSError as exc:  # a full disk outside the files written whole (logs, caches)
        if debug() or exc.errno not in NO_ROOM:
            raise
        print(
            f"{prog}: error: could not write {exc.filename or 'a file'} ({NO_ROOM[exc.errno]}); checkpoints, "
            "metrics.json and the packed model are replaced only whole, so those on disk are intact",
            file=sys.stderr,
        )
        sys.exit(EXIT_USER_ERROR)

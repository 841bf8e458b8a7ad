"""Per-channel mean and std of a dataset's training images, computed once and kept in
``$BNN_LAB_CACHE/stats/`` (default ``~/.cache/bnn-lab/stats/``), one small JSON file per
(list of training files, channels, size)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)
Stats = tuple[list[float], list[float]]


def cache_dir() -> Path:
    return Path(os.path.expanduser(os.environ.get("BNN_LAB_CACHE") or "~/.cache/bnn-lab")) / "stats"


def stats_key(paths: list[str], **details) -> str:
    h = hashlib.sha256("\n".join(paths).encode())
    h.update(json.dumps(details, sort_keys=True).encode())
    return h.hexdigest()[:24]


def cached_stats(key: str, compute: Callable[[], Stats]) -> Stats:
    """The stored (mean, std) of ``key``, else ``compute()``, stored for the next run (a cache
    that cannot be written is skipped)."""
    file = cache_dir() / f"{key}.json"
    try:
        stored = json.loads(file.read_text())
        return [float(v) for v in stored["mean"]], [float(v) for v in stored["std"]]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    mean, std = compute()
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"mean": mean, "std": std}) + "\n")
        os.replace(tmp, file)
    except OSError as exc:
        log.info("mean and std not cached (%s): they are computed again next time", exc)
    return mean, std

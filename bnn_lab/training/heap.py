"""Keep freed tensor memory in the process heap, so each training step reuses it.

CPU tensors come from the C library's malloc. glibc serves every block above its mmap
threshold (128 KiB, raised on the fly to at most 32 MiB) with a fresh mapping, unmapped again on
free, and gives the free top of its heap back to the kernel beyond a trim threshold. A training
step frees and reallocates its activations (megabytes each) every iteration, so the kernel
faults in and zeroes the same memory again on every step: on CPU that costs as much as a tenth
of a step, and more for a binary net, which keeps more tensors per layer alive than its float
twin (the sign outputs). Fixing both thresholds high keeps the freed blocks in the heap for
the next step, as tcmalloc or jemalloc would. The peak memory is unchanged (the same blocks are
reused); the process just does not give them back between steps.

Only glibc has ``mallopt``; elsewhere (macOS, musl) this does nothing and says so.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # glibc's <malloc.h> parameter numbers
M_MMAP_THRESHOLD = -3
MMAP_MAX = 32 << 20  # glibc's ceiling for the mmap threshold on 64-bit systems
TRIM = 1 << 30  # keep up to 1 GiB of free heap top


def _glibc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        _ = libc.gnu_get_libc_version  # only glibc has it
        return libc
    except (OSError, AttributeError):
        return None


@functools.cache
def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds once per process; True when they are set."""
    libc = _glibc()
    applied = (
        libc is not None and libc.mallopt(M_MMAP_THRESHOLD, MMAP_MAX) == 1 and libc.mallopt(M_TRIM_THRESHOLD, TRIM) == 1
    )
    if not applied:
        log.info("malloc thresholds left as they are (not glibc)")
    return applied

"""Timing side by side: every compared function in its own block of consecutive calls, the
blocks alternating over several rounds, so that background load on a shared machine hits
every function alike."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def time_alternating(
    fns: dict[str, Callable[[], object]], device: torch.device, repeats: int, rounds: int = 3, warmup: int = 1
) -> dict[str, list[float]]:
    """Milliseconds of every timed call of each function.

    ``repeats`` calls per function are split over ``rounds`` blocks, run in turn (a, b, a, b,
    ...); ``warmup`` untimed calls precede the first block of each function, one the later ones.
    Single calls are not interleaved: each kernel would pay for the other's OpenMP threads,
    which keep spinning for a while after a parallel region.
    """
    times: dict[str, list[float]] = {name: [] for name in fns}
    per_round = [repeats // rounds + (1 if r < repeats % rounds else 0) for r in range(rounds)]
    for r, count in enumerate(per_round):
        for name, fn in fns.items():
            for _ in range(warmup if r == 0 else 1):
                fn()
            for _ in range(count):
                sync(device)
                t0 = time.perf_counter()
                fn()
                sync(device)
                times[name].append((time.perf_counter() - t0) * 1e3)
    return times

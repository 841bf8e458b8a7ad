"""Background loads for benchmarks: other processes that keep the cores busy while a benchmark runs,
so that anyone can see how a model behaves on a shared machine and not only on an idle one.

A load is named ``KIND`` or ``KIND:THREADS`` (``--load torch-matmul:2 --load busy``):

* ``busy``: a Python loop, one thread, never waiting (another service's request handler).
* ``torch-matmul``: torch multiplying 512x512 float32 matrices in a loop with ``THREADS`` threads
  (default 2): an OpenMP team that computes and spins, as a training job or a float model beside
  ours does.
* ``packed-inference``: another worker serving a packed binary ResNet-18 (224 px, batch 1, its
  inference graph) in a loop with ``THREADS`` threads (default 2), as replicas of one service do.

Each load is a separate process, started before the timing and stopped after it (also on errors).
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

from ..errors import UserError


def _busy(threads: int) -> str:
    return "while True:\n    pass\n"


def _torch_matmul(threads: int) -> str:
    return f"import torch\ntorch.set_num_threads({threads})\na = torch.randn(512, 512)\nwhile True:\n    a @ a\n"


def _packed_inference(threads: int) -> str:
    return (
        "import torch\n"
        f"torch.set_num_threads({threads})\n"
        "from bnn_lab.bench.model import models_from_arch\n"
        "from bnn_lab.export import inference_model\n"
        "packed = models_from_arch('resnet18', 'ste', 3, 224, 1000, 'auto')[0]\n"
        "model, x = inference_model(packed), torch.randn(1, 3, 224, 224)\n"
        "with torch.no_grad():\n"
        "    while True:\n"
        "        model(x)\n"
    )


#: kind -> (default threads, program of one load process given its threads, seconds it takes to start)
LOADS: dict[str, tuple[int, Callable[[int], str], float]] = {
    "busy": (1, _busy, 0.5),
    "torch-matmul": (2, _torch_matmul, 3.0),
    "packed-inference": (2, _packed_inference, 10.0),
}


def _die_with_parent() -> None:
    """In a load process before it starts (Linux): killed when the benchmark dies, however it dies, so that
    no load outlives it and skews the next figures."""
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def parse(spec: str) -> tuple[str, int]:
    """``KIND`` or ``KIND:THREADS`` -> (kind, threads); an unknown kind lists the valid ones."""
    kind, _, threads = spec.partition(":")
    if kind not in LOADS:
        raise UserError(f"unknown --load {kind!r}; valid: {', '.join(sorted(LOADS))} (KIND or KIND:THREADS)")
    if not threads:
        return kind, LOADS[kind][0]
    if not threads.isdigit() or int(threads) < 1:
        raise UserError(f"--load {spec!r}: THREADS must be a positive integer")
    return kind, int(threads)


@contextlib.contextmanager
def running(specs: list[str], settle_s: float | None = None) -> Iterator[list[str]]:
    """Run one process per load spec for the duration of the block (after ``settle_s``, default the
    slowest kind's start-up); yields their descriptions."""
    parsed = [parse(s) for s in specs]
    procs: list[subprocess.Popen] = []
    try:
        for kind, threads in parsed:
            program = LOADS[kind][1](threads)
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-c", program],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    preexec_fn=_die_with_parent,
                )
            )
        if procs:
            time.sleep(settle_s if settle_s is not None else max(LOADS[k][2] for k, _ in parsed))
            dead = [s for s, p in zip(specs, procs) if p.poll() is not None]
            if dead:
                raise UserError(f"background load(s) {', '.join(dead)} exited at once")
        yield [f"{kind}:{threads}" for kind, threads in parsed]
        dead = [s for s, p in zip(specs, procs) if p.poll() is not None]
        if dead:
            raise UserError(f"background load(s) {', '.join(dead)} stopped during the timing: figures not loaded")
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()

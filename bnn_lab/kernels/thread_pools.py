"""How the CPU kernels share the cores with torch and with the rest of the machine.

Two thread pools meet in a process that runs a packed model: numba's, which runs the binary
kernels, and torch's OpenMP pool, which runs the float layers (the stem, a classifier). With
numba's ``omp`` layer both are GNU OpenMP teams: after every parallel region their workers
spin for milliseconds, and every region ends in a barrier that waits for each team member. On a
busy machine the spinning workers of one pool take the cores that the other pool's barrier is
waiting for, and a forward that takes 4 ms idle can take 200 ms (docs/performance.md).

``tbb`` (the default where the ``tbb`` package is installed) removes both: numba runs the kernels
with Intel TBB's work stealing (a running thread takes the chunks of one that is descheduled, and
the caller waits for no thread that took no work), and the inference graph runs its float layers
on the calling thread (:func:`float_ops_on_caller`), so no OpenMP team is woken inside a forward.
It costs some speed on an idle machine (the float layers on one thread). ``omp`` keeps numba's OpenMP
layer and torch's threads: the fastest idle, the one that collapses under load.

The choice is made once per process, before numba starts its threads: the ``BNN_LAB_THREADING``
environment variable (``tbb`` | ``omp``), else ``tbb`` where it can be loaded, else ``omp``. A
threading layer already set for numba (``NUMBA_THREADING_LAYER``) is left as it is.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import queue
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import torch

LAYERS = ("tbb", "omp")
ENV = "BNN_LAB_THREADING"

_chosen: str | None = None
_local = threading.local()  # per calling thread: the kernel threads while float ops run on the caller


def _tbb_library() -> Path | None:
    """The TBB runtime that the ``tbb`` wheel installs into the environment's ``lib`` folder
    (which is not on the loader's path), or None."""
    for root in (sys.prefix, sys.base_prefix):
        lib = Path(root) / "lib" / "libtbb.so.12"
        if lib.exists():
            return lib
    return None


def _load_tbb() -> bool:
    """Load the TBB runtime so that numba's ``tbbpool`` finds it; False where it cannot."""
    if importlib.util.find_spec("numba") is None:
        return False
    lib = _tbb_library()
    try:
        if lib is not None:
            ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
        import numba.np.ufunc.tbbpool  # noqa: F401 - fails without a TBB runtime
    except (ImportError, OSError):
        return False
    return True


def requested() -> str | None:
    """The layer asked for in ``BNN_LAB_THREADING`` (None where unset); an unknown name raises."""
    value = os.environ.get(ENV, "").strip().lower()
    if not value:
        return None
    if value not in LAYERS:
        raise ValueError(f"{ENV}={value!r} is not a threading layer; valid: {', '.join(LAYERS)}")
    return value


def configure() -> str:
    """Choose numba's threading layer for this process (once; before numba starts its threads) and
    return it: ``tbb`` or ``omp`` as the module docstring says, numba's own setting, or ``none``
    without numba."""
    global _chosen
    if _chosen is not None:
        return _chosen
    if importlib.util.find_spec("numba") is None:
        _chosen = "none"  # no cpu kernels: the torch backend runs on torch's threads
        return _chosen
    import numba

    if numba.config.THREADING_LAYER not in ("default", "", None):
        _chosen = str(numba.config.THREADING_LAYER)
        return _chosen
    want = requested()
    if want == "tbb" and not _load_tbb():
        raise RuntimeError(f"{ENV}=tbb but the TBB runtime cannot be loaded (pip install tbb)")
    if want is None:
        want = "tbb" if _load_tbb() else "omp"
    numba.config.THREADING_LAYER = want
    _chosen = want
    return want


def layer() -> str:
    """The threading layer the kernels run on (chosen on first call)."""
    return configure()


def kernel_threads() -> int | None:
    """Threads the kernels use while :func:`float_ops_on_caller` is active on this thread (else None:
    torch's count)."""
    return getattr(_local, "threads", None)


@contextlib.contextmanager
def float_ops_on_caller():
    """Inside: torch runs its operators on the calling thread, the kernels keep the thread count torch
    had (``tbb`` layer only; a no-op with ``omp``, where torch's team stays as fast idle)."""
    if layer() != "tbb" or kernel_threads() is not None:
        yield
        return
    threads = torch.get_num_threads()
    _local.threads = threads
    if threads > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        _local.threads = None
        if threads > 1:
            torch.set_num_threads(threads)


class _Deal:
    """Items ``0 .. n - 1`` of one call of :func:`deal`, claimed one at a time by whichever thread
    asks next; ``running`` counts the items being run, so the caller waits only for those."""

    def __init__(self, fn: Callable[[int], None], n: int) -> None:
        self.fn, self.n, self.next, self.running = fn, n, 0, 0
        self.error: BaseException | None = None
        self.cond = threading.Condition()
        # grad and inference mode are per thread: every item runs in the caller's
        self.grad, self.inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()

    def work(self, before_item: Callable[[], None] | None = None) -> None:
        while True:
            with self.cond:
                if self.next >= self.n or self.error is not None:
                    return
                i, self.next, self.running = self.next, self.next + 1, self.running + 1
            try:
                if before_item is not None:
                    before_item()
                with torch.inference_mode(self.inference), torch.set_grad_enabled(self.grad):
                    self.fn(i)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, which raises it
                with self.cond:
                    self.error = self.error or exc
            finally:
                with self.cond:
                    self.running -= 1
                    self.cond.notify_all()

    def finish(self) -> None:
        """Wait for the items other threads are running (none is left to claim when this is called)."""
        with self.cond:
            self.cond.wait_for(lambda: self.running == 0)
        if self.error is not None:
            raise self.error


class _Helper:
    """A daemon thread that joins each :class:`_Deal` handed to it; torch runs on one thread in it."""

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[_Deal] = queue.SimpleQueue()
        threading.Thread(target=self._loop, name="bnn-lab-float-helper", daemon=True).start()

    def _loop(self) -> None:
        while True:
            self.jobs.get().work(_one_torch_thread)


def _one_torch_thread() -> None:
    """torch and the kernels on one thread in a helper (no team of their own beside the other threads);
    called with an item claimed, so inside the caller's :func:`float_ops_on_caller`, where torch's
    count is 1 anyway."""
    _local.threads = 1
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


_helpers: list[_Helper] = []
_dealing = threading.Lock()  # one deal at a time uses the helpers; another caller runs its items alone


def _after_fork_in_child() -> None:
    """A forked child has none of the parent's helper threads: it starts its own."""
    global _dealing
    _helpers.clear()
    _dealing = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def deal(fn: Callable[[int], None], n: int) -> None:
    """Run ``fn(i)`` for ``i`` in ``range(n)`` on the calling thread and on helper threads, one item at
    a time to whichever thread is free (float work of a batch, image by image, while
    :func:`float_ops_on_caller` holds torch to the calling thread). A helper that gets no core takes
    no item and is not waited for; the caller waits only for items already started. Exceptions of
    ``fn`` are raised here. Without kernel threads to share, everything runs on the caller."""
    extra = (kernel_threads() or 1) - 1
    if extra <= 0 or n <= 1 or not _dealing.acquire(blocking=False):
        for i in range(n):
            fn(i)
        return
    try:
        while len(_helpers) < extra:
            _helpers.append(_Helper())
        job = _Deal(fn, n)
        for helper in _helpers[:extra]:
            helper.jobs.put(job)
        kept, _local.threads = getattr(_local, "threads", None), 1  # each item on one thread, kernels too
        try:
            job.work()
        finally:
            _local.threads = kept
        job.finish()
    finally:
        _dealing.release()


def enter_float_ops_on_caller(module, args) -> None:
    """Forward pre-hook form of :func:`float_ops_on_caller` (the inference graph's; for CPU inputs)."""
    stack = getattr(_local, "hooks", None)
    if stack is None:
        stack = _local.hooks = []
    on_cpu = bool(args) and isinstance(args[0], torch.Tensor) and args[0].device.type == "cpu"
    ctx = float_ops_on_caller() if on_cpu else contextlib.nullcontext()
    ctx.__enter__()
    stack.append(ctx)


def exit_float_ops_on_caller(module, args, output) -> None:
    """Forward hook (``always_call``) that ends :func:`enter_float_ops_on_caller`."""
    stack = getattr(_local, "hooks", None)
    if stack:
        stack.pop().__exit__(None, None, None)


__all__ = [
    "ENV",
    "LAYERS",
    "configure",
    "deal",
    "enter_float_ops_on_caller",
    "exit_float_ops_on_caller",
    "float_ops_on_caller",
    "kernel_threads",
    "layer",
    "requested",
]

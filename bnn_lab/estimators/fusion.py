"""Fused elementwise functions: ``torch.compile`` of an estimator's plain-torch vjp (or of
another elementwise function of tensors shaped alike, such as FDA's weight terms).

Run eagerly, every elementwise op of a vjp is one pass over the activation in memory (FDA's
closed form takes nine, two of them sines); on CPU these passes, not the arithmetic, make a
binary step slower than a float one. Inductor turns the same function into one loop (C++ on
CPU, Triton on GPU) that reads x and dy once and writes dx once.

The eager function stays the reference and the fallback: small tensors (one layer's
weights), float64 (reference checks, never training) and code already being compiled
(``compile=true`` compiles the whole step, vjp included) call it directly, and so does every
call after compiling has failed once (no C++ compiler, no Triton), with one warning. Sizes
are dynamic, so one kernel serves every layer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

log = logging.getLogger(__name__)
# below this size (latent weights, small activations) the compiled call's own overhead (guards,
# about 0.1 ms) costs more than the passes it saves
MIN_NUMEL = 1 << 16


class FusedLoop:
    """``fn(*args)`` through ``torch.compile`` where that works, else eagerly: a vjp
    ``(dy, x, *constants)`` or any elementwise function whose first argument is a tensor of
    the size that the work scales with (it decides between compiled and eager).

    ``fast``: what the compiled loop runs when it differs from the eager ``fn`` (same
    arguments, the same values to float32 rounding, cheaper as one loop: a polynomial instead
    of sines, say); ``fn`` by default."""

    def __init__(self, fn: Callable[..., torch.Tensor], fast: Callable[..., torch.Tensor] | None = None) -> None:
        self.fn = fn
        self.fast = fast or fn
        self.compiled: Callable[..., torch.Tensor] | None = None
        self.failed = False

    def __deepcopy__(self, memo) -> "FusedLoop":
        return self  # one per function and process (:func:`fuse`), shared by copies of a model

    def __reduce__(self):  # pickled as the functions; unpickling finds the process's own one
        return fuse, (self.fn, None if self.fast is self.fn else self.fast)

    def __call__(self, *args):
        lead = args[0]
        if self.failed or lead.numel() < MIN_NUMEL or lead.dtype == torch.float64 or torch.compiler.is_compiling():
            return self.fn(*args)
        if self.compiled is None:
            self.compiled = torch.compile(self.fast, dynamic=True, fullgraph=True)
        try:  # detach: a Parameter (a weight) would get static shapes, one kernel per layer, and
            # a view (a reshaped gradient) guards on the sizes of its base
            return self.compiled(*(a.detach() if isinstance(a, torch.Tensor) else a for a in args))
        except Exception as exc:  # compiling is an optimisation: any failure means the eager path
            self.failed = True
            log.warning(
                "compiled loop of %s unavailable, using the eager one: %s: %s",
                getattr(self.fast, "__name__", self.fast),
                type(exc).__name__,
                str(exc).splitlines()[0] if str(exc) else "",
            )
            return self.fn(*args)


_FUSED: dict[tuple[Callable, Callable | None], FusedLoop] = {}


def fuse(fn: Callable, fast: Callable | None = None) -> FusedLoop:
    """The one :class:`FusedLoop` of ``fn`` (compiled once per process, shared by all layers)."""
    if (fn, fast) not in _FUSED:
        _FUSED[(fn, fast)] = FusedLoop(fn, fast)
    return _FUSED[(fn, fast)]

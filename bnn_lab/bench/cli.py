"""``bnn-lab-bench``: time the binary kernels against the float ones, same process, same threads.

::

    bnn-lab-bench gemm --m 256 --n 512 --k 4608 [--device cpu|cuda] [--backend auto] [--json]
    bnn-lab-bench conv --n 8 --c 256 --o 256 --h 14 --w 14 --k 3 [--stride 1] [--padding 1] [--json]
    bnn-lab-bench train --arch resnet20 --estimator ste [--batch 128] [--json]
    bnn-lab-bench model path=<run dir> | --arch resnet18 [--batch 16] [--profile] [--device cuda] [--json]

``gemm`` times ``binary_matmul`` on pre-packed operands (only the matmul is timed)
against ``a @ b.T`` in float32 on CPU / bfloat16 on CUDA. ``conv`` times
``binary_conv2d`` from the float activation and pre-packed weights (so the input
packing and im2col are included) against ``F.conv2d`` in float32 (bfloat16 on CUDA).
Each is timed in blocks of consecutive calls after a warm-up, the blocks alternating
(binary, float, binary, ...), and the medians are reported. numba uses as many threads as torch
(``--threads`` sets both). The binary result is also checked against the float
``+-1`` reference (``exact`` in the output).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from bnn_lab import kernels

from .timing import time_alternating


def time_pair(
    binary: Callable[[], object],
    floating: Callable[[], object],
    device: torch.device,
    warmup: int,
    repeats: int,
    rounds: int = 3,
) -> tuple[float, float]:
    """Median milliseconds of ``binary()`` and ``floating()``, timed in alternating blocks
    (:func:`~bnn_lab.bench.timing.time_alternating`)."""
    times = time_alternating({"binary": binary, "float": floating}, device, repeats, rounds, warmup)
    return statistics.median(times["binary"]), statistics.median(times["float"])


def _signs(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 0, 1.0, -1.0)


def run_gemm(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(args.m, args.k, generator=gen)
    b = torch.randn(args.n, args.k, generator=gen)
    a_bits = kernels.pack_signs(a).to(device)
    b_bits = kernels.pack_signs(b).to(device)
    backend = kernels.resolve_backend(args.backend, device)
    fdtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    af, bf = a.to(device, fdtype), b.to(device, fdtype)
    ref = (_signs(a) @ _signs(b).T).to(torch.int32)
    got = kernels.binary_matmul(a_bits, b_bits, args.k, backend=backend)
    exact = torch.equal(got.cpu(), ref)
    binary_ms, float_ms = time_pair(
        lambda: kernels.binary_matmul(a_bits, b_bits, args.k, backend=backend),
        lambda: af @ bf.T,
        device,
        args.warmup,
        args.repeats,
    )
    return {
        "op": "gemm",
        "m": args.m,
        "n": args.n,
        "k": args.k,
        **_timing_fields(device, backend, fdtype, args.repeats, binary_ms, float_ms, exact),
    }


def _timing_fields(device, backend, fdtype, repeats, binary_ms, float_ms, exact) -> dict:
    """The result keys shared by every benchmark."""
    return {
        "device": device.type,
        "backend": backend,
        "float_dtype": str(fdtype).replace("torch.", ""),
        "threads": torch.get_num_threads(),
        "repeats": repeats,
        "binary_ms": binary_ms,
        "float_ms": float_ms,
        "speedup": float_ms / binary_ms,
        "exact": exact,
    }


def run_conv(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    padding = args.k // 2 if args.padding is None else args.padding
    x = torch.randn(args.n, args.c, args.h, args.w, generator=gen)
    w = torch.randn(args.o, args.c, args.k, args.k, generator=gen)
    backend = kernels.resolve_backend(args.backend, device)
    packed = kernels.pack_conv2d_weight(w.to(device))
    fdtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    xd = x.to(device)
    xf, wf = x.to(device, fdtype), w.to(device, fdtype)
    conv_kw = dict(stride=args.stride, padding=padding)
    ref = F.conv2d(_signs(x), _signs(w), **conv_kw).to(torch.int32)
    got = kernels.binary_conv2d(xd, packed, backend=backend, **conv_kw)
    exact = torch.equal(got.cpu(), ref)
    binary_ms, float_ms = time_pair(
        lambda: kernels.binary_conv2d(xd, packed, backend=backend, **conv_kw),
        lambda: F.conv2d(xf, wf, **conv_kw),
        device,
        args.warmup,
        args.repeats,
    )
    return {
        "op": "conv",
        "n": args.n,
        "c": args.c,
        "o": args.o,
        "h": args.h,
        "w": args.w,
        "k": args.k,
        "stride": args.stride,
        "padding": padding,
        **_timing_fields(device, backend, fdtype, args.repeats, binary_ms, float_ms, exact),
    }


def _table(res: dict) -> str:
    if res["op"] == "gemm":
        shape = f"M={res['m']} N={res['n']} K={res['k']}"
        fname = f"torch a @ b.T ({res['float_dtype']})"
    else:
        shape = (
            f"N={res['n']} C={res['c']} O={res['o']} H={res['h']} W={res['w']} k={res['k']} "
            f"stride={res['stride']} padding={res['padding']}"
        )
        fname = f"torch conv2d ({res['float_dtype']})"
    bname = f"binary_{'matmul' if res['op'] == 'gemm' else 'conv2d'} ({res['backend']})"
    width = max(len(fname), len(bname))
    lines = [
        f"{res['op']}  {shape}  device={res['device']} threads={res['threads']} median of {res['repeats']}",
        f"  {bname:<{width}}  {res['binary_ms']:9.3f} ms",
        f"  {fname:<{width}}  {res['float_ms']:9.3f} ms",
        f"  {'speedup':<{width}}  {res['speedup']:9.1f} x",
        f"  {'exact':<{width}}  {res['exact']}",
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bnn-lab-bench", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
        p.add_argument(
            "--backend", default="auto", help=f"binary_matmul backend: {', '.join(kernels.available_backends())}"
        )
        p.add_argument("--threads", type=int, default=None, help="torch and numba threads (default: torch's)")
        p.add_argument("--warmup", type=int, default=3, help="untimed warm-up runs of each (default 3)")
        p.add_argument("--repeats", type=int, default=30, help="timed runs of each; the median is reported")
        p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")

    g = sub.add_parser("gemm", help="binary_matmul vs float matmul")
    g.add_argument("--m", type=int, default=256)
    g.add_argument("--n", type=int, default=512)
    g.add_argument("--k", type=int, default=4608)
    common(g)

    c = sub.add_parser("conv", help="binary_conv2d vs F.conv2d")
    c.add_argument("--n", type=int, default=8, help="batch size")
    c.add_argument("--c", type=int, default=256, help="input channels")
    c.add_argument("--o", type=int, default=256, help="output channels")
    c.add_argument("--h", type=int, default=14)
    c.add_argument("--w", type=int, default=14)
    c.add_argument("--k", type=int, default=3, help="kernel size (square)")
    c.add_argument("--stride", type=int, default=1)
    c.add_argument("--padding", type=int, default=None, help="default: k // 2")
    common(c)

    from .train_step import add_parser as add_train_parser

    add_train_parser(sub)  # `train`: training-step time, binary vs full precision
    from .model import add_parser as add_model_parser

    add_model_parser(sub)  # `model`: end-to-end inference, packed vs the same network in float
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("train", "model"):
        return args.run(args)
    if args.device not in ("cpu", "cuda"):
        parser.error(f"--device must be cpu or cuda, got {args.device!r}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    if args.backend not in kernels.available_backends():
        parser.error(f"unknown --backend {args.backend!r}; valid: {', '.join(kernels.available_backends())}")
    if args.repeats < 1 or args.warmup < 0:
        parser.error("--repeats must be >= 1 and --warmup >= 0")
    dims = [v for name, v in vars(args).items() if name in ("m", "n", "k", "c", "o", "h", "w", "stride")]
    if any(v < 1 for v in dims):
        parser.error("sizes must be >= 1")
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be >= 1")
        torch.set_num_threads(args.threads)
    try:
        res = run_gemm(args) if args.command == "gemm" else run_conv(args)
    except RuntimeError as exc:  # e.g. triton on CPU without TRITON_INTERPRET=1
        print(f"bnn-lab-bench: error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(res) if args.json else _table(res))
    return 0 if res["exact"] else 1

"""``bnn-lab-bench model``: end-to-end inference of a packed binary network against the same
network in float, in one process, with the same threads.

::

    bnn-lab-bench model path=<run dir or model.packed.safetensors> [--batch 16] [--profile] [--json]
    bnn-lab-bench model --arch resnet18 [--size 224 --chans 3 --classes 1000] [--device cuda]
    bnn-lab-bench model --arch resnet18 --threads 2 --load torch-matmul:2      # on a busy machine
    bnn-lab-bench model --arch resnet18 --threads 2 --lce-python <venv with larq-compute-engine>/bin/python

A run is benchmarked from its packed file; the float network is the same architecture built in
full precision (``precision=fp``: the stem, the convs and the classifier in float). With ``--arch``
the binary model is built, given BatchNorm statistics from a few random batches and packed
(the packed model's logits are checked against it: ``same_predictions``). On CPU the float
network runs in float32; on CUDA (``--device cuda``) in bfloat16, the packed one with the
Triton kernels.

The packed model runs as its inference graph (``bnn_lab.export.graph``: packed convolutions
hand packed bits to the next one where the graph allows; ``bit_links`` counts them);
``--plain`` times the packed model without it.

The float network runs in each engine a deploying user could pick instead (``float_engines``:
torch eager, torch with BatchNorm folded and channels-last, onnxruntime; ``--baselines``), and the
result gives the ratio to each and to the best of them. ``--load`` runs background processes
during the timing (``background``), to see the packed model on a busy machine.

Latency is timed at batch 1 and throughput at ``--batch``. Each engine is timed in blocks of
consecutive calls (a warm-up before each block), the blocks alternating (packed, torch, ...,
packed, ...) so that a change in the machine's load hits all; reported: the median of all calls,
the spread (25th and 75th percentiles), the ratio engine / packed of the medians. ``--profile``
times every outermost leaf module (a fused module whole, not its children again; forward hooks,
separate runs without autograd, as the timed ones) and sums the times by module type;
"between modules" is the rest of the forward (residual additions, reshapes, Python).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch import nn

from ..errors import UserError
from .background import parse as background_parse
from .background import running
from .float_engines import ENGINES, build_engines
from .timing import sync, time_alternating


def _compose(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from ..cli.train import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def models_from_run(path: str | Path, backend: str) -> tuple[nn.Module, nn.Module, tuple[int, int, int], dict]:
    """(packed, float network, input shape, info) of a run directory or packed file."""
    from omegaconf import OmegaConf

    from ..assembly import build_model
    from ..export import load_packed, packed_file

    file = packed_file(path)
    packed, meta = load_packed(file, backend=backend)
    cfg = OmegaConf.create(meta["config"])
    chans, classes, size = (int(meta[k]) for k in ("in_chans", "num_classes", "img_size"))
    floating, _ = build_model(cfg, chans, classes, size, precision="fp")
    return (
        packed,
        floating.eval(),
        (chans, size, size),
        {"model": str(file), "arch": meta["arch"], "estimator": meta.get("estimator"), "classes": classes},
    )


def models_from_arch(
    arch: str, estimator: str, chans: int, size: int, classes: int, backend: str, overrides: list[str] = ()
) -> tuple[nn.Module, nn.Module, tuple[int, int, int], dict]:
    """(packed, float network, input shape, info) of an architecture; checks packed == binary float."""
    from ..assembly import build_model
    from ..export import pack_model

    cfg = _compose([f"arch={arch}", f"estimator={estimator}", *overrides])
    torch.manual_seed(0)
    binary, _ = build_model(cfg, chans, classes, size)
    binary.train()
    with torch.no_grad():  # BatchNorm statistics that are not the identity
        for _ in range(2):
            binary(torch.randn(2, chans, size, size))
    binary.eval()
    packed, report = pack_model(binary, backend=backend)
    x = torch.randn(2, chans, size, size)
    with torch.no_grad():
        same = bool(torch.equal(binary(x).argmax(1), packed(x).argmax(1)))
    floating, _ = build_model(cfg, chans, classes, size, precision="fp")
    floating.train()
    with torch.no_grad():  # the same for the float network: its engines are compared on real logits
        for _ in range(2):
            floating(torch.randn(2, chans, size, size))
    return (
        packed,
        floating.eval(),
        (chans, size, size),
        {
            "model": None,
            "arch": arch,
            "estimator": estimator,
            "classes": classes,
            "same_predictions": same,
            "packed_layers": len(report.packed),
            "kept_float": len(report.kept_float),
        },
    )


def _quartiles(times: list[float]) -> tuple[float, float, float]:
    if len(times) < 2:
        return times[0], times[0], times[0]
    q1, q2, q3 = statistics.quantiles(times, n=4, method="inclusive")
    return q1, q2, q3


def _is_leaf(module: nn.Module) -> bool:
    from ..export import PackedBinaryConv2d, PackedBinaryLinear
    from ..export.graph import PackedConv2dToBits
    from ..export.image_split import ImageSplitConvPool
    from ..export.residual_fusion import PackedConv2dResidual

    fused = (PackedBinaryConv2d, PackedBinaryLinear, PackedConv2dToBits, PackedConv2dResidual, ImageSplitConvPool)
    return isinstance(module, fused) or not any(True for _ in module.children())


def _outermost_leaves(model: nn.Module) -> list[nn.Module]:
    """The leaf modules of ``model`` that no other leaf contains: a fused module's children run
    inside its time and are not counted a second time."""
    found: list[nn.Module] = []
    for child in model.children():
        found += [child] if _is_leaf(child) else _outermost_leaves(child)
    return found


@torch.no_grad()
def profile(model: nn.Module, x: torch.Tensor, device: torch.device, runs: int = 5) -> dict[str, float]:
    """Median milliseconds per forward spent in each leaf module type (and between modules)."""
    spent: dict[str, float] = defaultdict(float)
    starts: dict[int, float] = {}
    handles = []

    def pre(module, args):
        sync(device)
        starts[id(module)] = time.perf_counter()

    def post(module, args, out):
        sync(device)
        spent[type(module).__name__] += time.perf_counter() - starts.pop(id(module))

    for module in _outermost_leaves(model):
        handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    per_run: list[dict[str, float]] = []
    try:
        model(x)  # warm-up
        for _ in range(runs):
            spent.clear()
            sync(device)
            t0 = time.perf_counter()
            model(x)
            sync(device)
            total = time.perf_counter() - t0
            run = {k: v * 1e3 for k, v in spent.items()}
            run["between modules"] = max(total * 1e3 - sum(run.values()), 0.0)
            per_run.append(run)
    finally:
        for h in handles:
            h.remove()
    names = sorted({k for run in per_run for k in run})
    out = {k: statistics.median(run.get(k, 0.0) for run in per_run) for k in names}
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def bench_model(
    packed: nn.Module,
    floating: nn.Module,
    input_shape,
    info: dict,
    batch: int = 16,
    device: str = "cpu",
    repeats: int = 20,
    rounds: int = 4,
    warmup: int = 2,
    with_profile: bool = False,
    graph: bool = True,
    baselines: tuple[str, ...] = tuple(ENGINES),
    loads: tuple[str, ...] = (),
    lce_python: str | None = None,
) -> dict:
    """Time the packed model against each float engine (``float_engines``), in alternating blocks, with
    the background ``loads`` running (``background``); ``speedup[engine]`` = engine / packed medians."""
    from ..kernels import thread_pools

    dev = torch.device(device)
    info = dict(info, graph=graph)
    lce = None
    if lce_python is not None:  # exported from the packed model before the graph rewrites
        from .lce_peer import LcePeer

        lce = LcePeer(lce_python, packed, input_shape)
    if graph:
        from ..export.graph import build_inference_graph

        packed, report = build_inference_graph(packed)
        info["bit_links"] = len(report.bit_links)
        info["graph_rewrites"] = str(report).splitlines()[0]
    fdtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    packed = packed.to(dev).eval()
    floating = floating.to(dev, fdtype).eval()
    example = torch.randn(2, *input_shape, device=dev, dtype=fdtype)
    engines, checks = build_engines(list(baselines), floating, example)
    res = {
        **info,
        "input": list(input_shape),
        "device": dev.type,
        "threads": torch.get_num_threads(),
        "threading_layer": thread_pools.layer() if dev.type == "cpu" else None,
        "float_dtype": str(fdtype).replace("torch.", ""),
        "float_engines": checks,
        "repeats": repeats,
        "rounds": rounds,
        "batches": {},
    }
    with running(list(loads)) as described:
        res["load"] = described
        lce_runs = [lce.time(repeats, warmup)] if lce is not None else []
        for n in sorted({1, batch}):
            torch.manual_seed(0)
            x = torch.randn(n, *input_shape, device=dev)
            xf = x.to(fdtype)
            fns = {"packed": lambda x=x: packed(x)}
            fns.update({name: (lambda xf=xf, e=e: e(xf)) for name, e in engines.items()})
            times = time_alternating(fns, dev, repeats if n == 1 else max(repeats // 2, rounds), rounds, warmup)
            entry: dict = {"ms": {}, "p25_ms": {}, "p75_ms": {}, "images_per_s": {}}
            for name, t in times.items():
                q1, med, q3 = _quartiles(t)
                for key, value in (("ms", med), ("p25_ms", q1), ("p75_ms", q3)):
                    entry[key][name] = round(value, 3)
                entry["images_per_s"][name] = round(n / med * 1e3, 1)
            entry["speedup"] = {k: round(v / entry["ms"]["packed"], 3) for k, v in entry["ms"].items() if k != "packed"}
            if entry["speedup"]:
                best = min(entry["speedup"], key=entry["speedup"].get)
                entry["best_float"], entry["speedup_vs_best"] = best, entry["speedup"][best]
            if with_profile:
                entry["profile"] = {"packed": {k: round(v, 3) for k, v in profile(packed, x, dev).items()}}
                if "torch" in engines:
                    entry["profile"]["torch"] = {k: round(v, 3) for k, v in profile(floating, xf, dev).items()}
            res["batches"][str(n)] = entry
        if lce is not None:
            lce_runs.append(lce.time(repeats, warmup))
            lce.close()
            res["lce"] = {"batch": 1, "before": lce_runs[0], "after": lce_runs[1]}
            ratio = statistics.median([r["ms"] for r in lce_runs]) / res["batches"]["1"]["ms"]["packed"]
            res["lce"]["lce_over_packed"] = round(ratio, 3)
    return res


def _table(res: dict) -> str:
    name = res["model"] or f"{res['arch']} (binarized with {res['estimator']}, packed)"
    layer = f", kernels on {res['threading_layer']}" if res.get("threading_layer") else ""
    lines = [
        f"{name}: input {'x'.join(map(str, res['input']))}, {res['classes']} classes, {res['device']} "
        f"x{res['threads']} threads{layer}; float engines in {res['float_dtype']}; medians of alternating "
        f"blocks [25th-75th percentile]; background load: {', '.join(res['load']) or 'none'}"
    ]
    if res.get("graph"):
        lines.append(f"  inference graph: {res.get('graph_rewrites', res['bit_links'])}")
    if "same_predictions" in res:
        lines.append(
            f"  packed layers {res['packed_layers']}, kept float {res['kept_float']}, "
            f"packed predicts as the binary float model: {res['same_predictions']}"
        )
    for engine, check in res["float_engines"].items():
        lines.append(
            f"  {engine}: predicts as torch eager: {check['same_predictions']} "
            f"(largest logit difference {check['max_abs_diff']:.2g})"
        )
    for n, e in res["batches"].items():
        lines.append(f"  batch {n}:")
        for engine, ms in e["ms"].items():
            ratio = "" if engine == "packed" else f"   {engine} / packed {e['speedup'][engine]:.2f}x"
            lines.append(
                f"    {engine:<13} {ms:9.2f} ms [{e['p25_ms'][engine]:.2f}-{e['p75_ms'][engine]:.2f}] "
                f"({e['images_per_s'][engine]:.1f} img/s){ratio}"
            )
        if "best_float" in e:
            lines.append(f"    best float engine ({e['best_float']}) / packed: {e['speedup_vs_best']:.2f}x")
        if n == "1" and "lce" in res:
            before, after = res["lce"]["before"], res["lce"]["after"]
            lines.append(
                f"    LCE (its interpreter, another process, before / after): {before['ms']:.2f} "
                f"[{before['p25_ms']:.2f}-{before['p75_ms']:.2f}] / {after['ms']:.2f} ms; LCE / packed: "
                f"{res['lce']['lce_over_packed']:.2f}x"
            )
        for which, prof in e.get("profile", {}).items():
            total = sum(prof.values()) or 1.0
            parts = ", ".join(f"{k} {v:.2f} ms ({v / total:.0%})" for k, v in prof.items() if v / total >= 0.005)
            lines.append(f"      {which:>6} per forward {total:.2f} ms: {parts}")
    return "\n".join(lines)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model", help="end-to-end inference: packed binary network vs the same network in float")
    p.add_argument("path", nargs="?", default=None, help="path=<run dir or model.packed.safetensors>")
    p.add_argument("--arch", default=None, help="an architecture (conf/arch) instead of a run")
    p.add_argument("--estimator", default="ste", help="with --arch: the estimator (its threshold/scale matter)")
    p.add_argument("--size", type=int, default=224, help="with --arch: input height = width (default 224)")
    p.add_argument("--chans", type=int, default=3, help="with --arch: input channels (default 3)")
    p.add_argument("--classes", type=int, default=1000, help="with --arch: classes (default 1000)")
    p.add_argument("--override", action="append", default=[], help="with --arch: a config override KEY=VALUE")
    p.add_argument("--batch", type=int, default=16, help="throughput batch (default 16); latency is batch 1")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--backend", default="auto", help="binary kernels: auto | cpu | torch | triton")
    p.add_argument("--threads", type=int, default=None, help="torch and numba threads (default: torch's)")
    p.add_argument("--repeats", type=int, default=20, help="timed calls per model at batch 1 (half at --batch)")
    p.add_argument("--rounds", type=int, default=4, help="alternating blocks per model")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls before the first block")
    p.add_argument("--profile", action="store_true", help="time per module type (forward hooks)")
    p.add_argument("--plain", action="store_true", help="the packed model without its inference graph")
    p.add_argument(
        "--baselines",
        default=",".join(ENGINES),
        help=f"float engines to time against, comma-separated (default: {','.join(ENGINES)}; CUDA: torch only)",
    )
    p.add_argument(
        "--load",
        action="append",
        default=[],
        metavar="KIND[:THREADS]",
        help="a background process during the timing (repeatable): busy | torch-matmul[:threads] | "
        "packed-inference[:threads]",
    )
    p.add_argument(
        "--lce-python",
        default=None,
        metavar="PYTHON",
        help="also time the model exported for Larq Compute Engine, run by this Python's larq-compute-engine",
    )
    p.add_argument(
        "--threading",
        default=None,
        choices=("tbb", "omp"),
        help="the kernels' threading layer (default: tbb where installed; BNN_LAB_THREADING)",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..cli.errors import user_errors

    with user_errors("bnn-lab-bench model"):
        path = args.path[len("path=") :] if args.path and args.path.startswith("path=") else args.path
        if (path is None) == (args.arch is None):
            raise UserError("give a run (path=<run dir>) or --arch NAME, not both")
        if args.device == "cuda" and not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA device is available")
        if min(args.batch, args.repeats, args.rounds) < 1 or args.warmup < 0:
            raise UserError("--batch, --repeats and --rounds must be >= 1, --warmup >= 0")
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        if args.threading is not None:
            import os

            from ..kernels import thread_pools

            os.environ[thread_pools.ENV] = args.threading  # before the kernels' first use
        baselines = tuple(b for b in args.baselines.split(",") if b)
        unknown = [b for b in baselines if b not in ENGINES]
        if unknown:
            raise UserError(f"unknown --baselines {', '.join(unknown)}; valid: {', '.join(ENGINES)}")
        for spec in args.load:
            background_parse(spec)
        if path is not None:
            models = models_from_run(path, args.backend)
        else:
            models = models_from_arch(
                args.arch, args.estimator, args.chans, args.size, args.classes, args.backend, args.override
            )
        res = bench_model(
            *models,
            batch=args.batch,
            device=args.device,
            repeats=args.repeats,
            rounds=args.rounds,
            warmup=args.warmup,
            with_profile=args.profile,
            graph=not args.plain,
            baselines=baselines,
            loads=tuple(args.load),
            lce_python=args.lce_python,
        )
        print(json.dumps(res) if args.json else _table(res))
    return 0

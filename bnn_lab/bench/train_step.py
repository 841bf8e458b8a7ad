"""``bnn-lab-bench train``: the training-step time of a binary model against the same
architecture in full precision (``precision=fp``), in one process, with the same threads.

Both models see the same batch; each step is forward + backward + Adam step. Steps run
in blocks of consecutive steps of one model, as in training (the allocator then reuses the
previous step's memory; alternating single steps would not), and the blocks alternate
(binary, fp, binary, ...) so that a change in the machine's speed hits both. Reported: the
medians with their ratio, the median of the per-block-pair ratios, images per second.

``--heap default`` leaves the C library's malloc thresholds as they are instead of keeping
freed memory in the heap as training does (:mod:`bnn_lab.training.heap`). ``--precision
bf16`` runs forward and loss under bfloat16 autocast, ``--channels-last`` puts both models
(and the batch) in NHWC memory format, ``--compile`` times ``torch.compile`` of both models
(the warm-up steps compile).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from ..estimators import names as estimator_names
from ..training.heap import keep_freed_memory

PRECISIONS = ("32", "bf16")
HEAP_MODES = ("keep", "default")


def _model(arch: str, estimator: str, fp: bool, chans: int, size: int, classes: int, device):
    from hydra import compose, initialize_config_dir

    from ..assembly import build_model
    from ..cli.train import CONF_DIR

    overrides = [f"arch={arch}", f"estimator={estimator}", f"precision={'fp' if fp else '1w1a'}"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    model, _ = build_model(cfg, chans, classes, size)
    return model.to(device).train()


def bench_train(
    arch: str = "resnet20",
    estimator: str = "ste",
    batch: int = 128,
    size: int = 28,
    chans: int = 1,
    classes: int = 10,
    steps: int = 20,
    rounds: int = 4,
    device: str = "cpu",
    precision: str = "32",
    channels_last: bool = False,
    compile: bool = False,
    heap: str = "keep",
) -> dict:
    dev = torch.device(device)
    if heap not in HEAP_MODES:
        raise ValueError(f"heap must be one of {HEAP_MODES}, got {heap!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if heap == "keep":
        keep_freed_memory()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    torch.manual_seed(0)
    x = torch.randn(batch, chans, size, size, device=dev).contiguous(memory_format=fmt)
    y = torch.randint(0, classes, (batch,), device=dev)
    runs = {}
    for name, fp in (("binary", False), ("fp", True)):
        model = _model(arch, estimator, fp, chans, size, classes, dev).to(memory_format=fmt)
        runs[name] = (torch.compile(model) if compile else model, torch.optim.Adam(model.parameters(), lr=1e-3))

    def step(name: str) -> None:
        model, opt = runs[name]
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    times: dict[str, list[list[float]]] = {"binary": [], "fp": []}
    per_block = max(steps // rounds, 1)
    for r in range(rounds):  # blocks of consecutive steps, as in training, alternating models
        for name in ("binary", "fp"):
            for _ in range((3 if compile else 2) if r == 0 else 1):  # warm-up (compiled: the first steps compile)
                step(name)
            block = []
            for _ in range(per_block):
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                step(name)
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                block.append((time.perf_counter() - t0) * 1e3)
            times[name].append(block)
    b = statistics.median(t for block in times["binary"] for t in block)
    f = statistics.median(t for block in times["fp"] for t in block)
    block_ratio = statistics.median(
        statistics.median(bb) / statistics.median(fb) for bb, fb in zip(times["binary"], times["fp"])
    )
    return {
        "arch": arch,
        "estimator": estimator,
        "batch": batch,
        "input": [chans, size, size],
        "device": device,
        "threads": torch.get_num_threads(),
        "precision": precision,
        "channels_last": channels_last,
        "compile": compile,
        "binary_step_ms": round(b, 3),
        "fp_step_ms": round(f, 3),
        "ratio": round(b / f, 3),
        "block_ratio": round(block_ratio, 3),
        "steps": per_block * rounds,
        "rounds": rounds,
        "heap": heap,
        "binary_images_per_s": round(batch / b * 1e3, 1),
        "fp_images_per_s": round(batch / f * 1e3, 1),
    }


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="training-step time: binary model vs the same net in full precision")
    p.add_argument("--arch", default="resnet20")
    p.add_argument("--estimator", default="ste", choices=estimator_names())
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--size", type=int, default=28, help="input height = width")
    p.add_argument("--chans", type=int, default=1)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--steps", type=int, default=20, help="timed steps per model")
    p.add_argument("--rounds", type=int, default=4, help="blocks per model, alternating (binary, fp, binary, ...)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="32", choices=PRECISIONS, help="32, or bf16 autocast (default 32)")
    p.add_argument("--channels-last", action="store_true", help="models and batch in channels_last format")
    p.add_argument("--compile", action="store_true", help="torch.compile both models (inductor)")
    p.add_argument(
        "--heap",
        default="keep",
        choices=HEAP_MODES,
        help="keep: freed tensor memory stays in the heap, as in training (bnn_lab.training.heap); "
        "default: the C library's own thresholds",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    res = bench_train(
        args.arch,
        args.estimator,
        args.batch,
        args.size,
        args.chans,
        args.classes,
        args.steps,
        rounds=args.rounds,
        device=args.device,
        precision=args.precision,
        channels_last=args.channels_last,
        compile=args.compile,
        heap=args.heap,
    )
    if args.json:
        print(json.dumps(res))
    else:
        flags = [k.replace("_", "-") for k in ("channels_last", "compile") if res[k]]
        options = [f"precision {res['precision']}", f"heap {res['heap']}", *flags]
        print(
            f"{res['arch']} / {res['estimator']}, batch {res['batch']}, input {res['input']}, "
            f"{res['device']} x{res['threads']} threads, {', '.join(options)}"
        )
        print(f"  binary step {res['binary_step_ms']:9.2f} ms  ({res['binary_images_per_s']:.0f} images/s)")
        print(f"  fp step     {res['fp_step_ms']:9.2f} ms  ({res['fp_images_per_s']:.0f} images/s)")
        print(
            f"  ratio binary / fp: {res['ratio']:.3f} (medians of {res['steps']} steps), "
            f"{res['block_ratio']:.3f} (median over {res['rounds']} pairs of blocks)"
        )
    return 0

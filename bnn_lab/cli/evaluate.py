"""``bnn-lab-eval path=<run dir or packed file> [data=<option>] [data.root=...] [backend=auto] [--onnx out.onnx]``:
evaluates a packed model as a user deploys it (``bnn_lab.export.load_for_inference``: its inference graph
on the binary kernels) on a dataset's test split; ``--onnx`` also
writes the model as ONNX in standard operators (``bnn_lab.export.onnx``) and evaluates that file
with onnxruntime on the same split (``onnx/test_acc``, ``onnx/same_predictions``: the fraction of
images where it predicts what the packed model predicts); ``--lce`` writes it as a TFLite file with
Larq Compute Engine's binary operators (``bnn_lab.export.lce``; NHWC input, batch 1)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import ConfigError, UserError
from .errors import user_errors

USAGE = (
    "usage: bnn-lab-eval path=<run dir or model.packed.safetensors> [data=<option>] [data.KEY=VALUE ...] "
    "[backend=auto|cpu|torch|triton] [--onnx OUT.onnx] [--lce OUT.tflite] [--json]"
)


def _parse(argv: list[str]) -> tuple[dict[str, str], list[str], bool]:
    opts, data_overrides, as_json = {}, [], False
    argv = list(argv)
    while argv:
        arg = argv.pop(0)
        flag = arg.partition("=")[0]
        if flag in ("--onnx", "--lce"):
            value = arg.partition("=")[2] if "=" in arg else (argv.pop(0) if argv else "")
            if not value or value.startswith("-"):
                raise ConfigError(f"{flag} needs an output file; {USAGE}")
            opts[flag[2:]] = value
        elif arg == "--json":
            as_json = True
        elif arg in ("-h", "--help"):
            print(USAGE)
            sys.exit(0)
        elif "=" not in arg:
            raise ConfigError(f"unexpected argument {arg!r}; {USAGE}")
        else:
            key, value = arg.split("=", 1)
            if key.startswith("data.") or key == "data":
                data_overrides.append(arg)
            elif key in ("path", "backend"):
                opts[key] = value
            else:
                raise ConfigError(f"unknown key {key!r}; {USAGE}")
    if "path" not in opts:
        raise ConfigError(f"path= is required; {USAGE}")
    return opts, data_overrides, as_json


def trained_data(data, conf_dir: Path) -> list[str]:
    """Overrides that select the data a model was trained on: its option, and for an image
    folder (named after the folder, not an option) ``data=image_folder`` and its root."""
    if (conf_dir / "data" / f"{data.name}.yaml").is_file():
        return [f"data={data.name}"]
    return [f"data={data.get('module') or data.name}", f"data.root={data.root}"]


def _onnx(model, file: str, input_shape, loader) -> dict:
    """Export ``model`` to ``file`` and evaluate it with onnxruntime against the packed model."""
    import torch

    from ..export.onnx import OnnxRuntimeModel, export_onnx

    path = export_onnx(model, Path(file).expanduser(), input_shape)
    runtime = OnnxRuntimeModel(path)
    correct = same = total = 0
    with torch.no_grad():
        for x, y in loader:
            a, b = runtime(x).argmax(1), model(x).argmax(1)
            correct += int((a == y).sum())
            same += int((a == b).sum())
            total += len(y)
    return {
        "onnx/file": str(path),
        "onnx/test_acc": correct / max(total, 1),
        "onnx/same_predictions": same / max(total, 1),
    }


def main(argv: list[str] | None = None) -> int:
    with user_errors("bnn-lab-eval"):
        opts, data_overrides, as_json = _parse(sys.argv[1:] if argv is None else argv)
        from hydra import compose, initialize_config_dir
        from omegaconf import OmegaConf

        from ..assembly import build_data
        from ..export import evaluate, inference_model, load_packed, packed_file
        from .overrides import check_group_choices
        from .train import CONF_DIR

        file = packed_file(opts["path"])
        model, meta = load_packed(file, backend=opts.get("backend", "auto"))
        trained = OmegaConf.create(meta["config"])
        check_group_choices(data_overrides, CONF_DIR)
        if not any(o.startswith("data=") for o in data_overrides):
            data_overrides[:0] = trained_data(trained.data, CONF_DIR)
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name="config", overrides=data_overrides)
        dm = build_data(cfg)
        if (dm.in_chans, dm.num_classes) != (int(meta["in_chans"]), int(meta["num_classes"])):
            raise UserError(
                f"data {cfg.data.name} has {dm.in_chans} channels / {dm.num_classes} classes but the "
                f"model was trained for {meta['in_chans']} / {meta['num_classes']}"
            )
        dm.setup("test")
        result = evaluate(inference_model(model), dm.test_dataloader(), progress=not as_json)
        out = {"path": str(file), "arch": meta["arch"], "data": cfg.data.name, "packed/test_acc": result["acc"]}
        if "acc5" in result:
            out["packed/test_acc5"] = result["acc5"]
        if "onnx" in opts:
            out.update(_onnx(model, opts["onnx"], (dm.in_chans, dm.img_size, dm.img_size), dm.test_dataloader()))
        if "lce" in opts:
            from ..export.lce import export_lce

            lce_file = export_lce(model, Path(opts["lce"]).expanduser(), (dm.in_chans, dm.img_size, dm.img_size))
            out.update({"lce/file": str(lce_file), "lce/bytes": lce_file.stat().st_size})
        lines = [f"{meta['arch']} on {cfg.data.name}: packed test accuracy {result['acc']:.4f} ({file})"]
        if "lce" in opts:
            lines.append(f"LCE TFLite file: {out['lce/file']} ({out['lce/bytes']:,} bytes; input NHWC, batch 1)")
        if "onnx" in opts:
            lines.append(
                f"ONNX ({out['onnx/file']}): onnxruntime test accuracy {out['onnx/test_acc']:.4f}, "
                f"same prediction as packed on {out['onnx/same_predictions']:.2%} of the images"
            )
        print(json.dumps(out) if as_json else "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Packed export: same predictions as the float model, 1 bit per weight on disk,
safetensors round trip, clear errors for bad files."""

import json
from pathlib import Path

import pytest
import torch

from bnn_lab.errors import UserError
from bnn_lab.export import PackedBinaryConv2d, evaluate, load_packed, pack_model, save_packed
from bnn_lab.models import create
from bnn_lab.surgery import binarize


def trained_like(arch, estimator="ste", scale="none", activation="hardtanh", size=16):
    torch.manual_seed(0)
    model = create(arch, 1, 10, size)
    binarize(model, estimator, {"activation": activation, "keep_downsample": arch != "resnet20"}, scale=scale)
    model.train()
    with torch.no_grad():  # give the BN layers non-trivial running statistics
        for _ in range(3):
            model(torch.randn(32, 1, size, size))
    return model.eval()


@pytest.mark.parametrize(
    "arch,estimator,scale,activation",
    [
        ("resnet20", "ste", "none", "hardtanh"),
        ("resnet20", "rsign", "learned", "rprelu"),
        ("resnet20", "fda", "xnor", "hardtanh"),
        ("resnet20", "ste", "gating", "hardtanh"),
        ("binary_densenet28", "ste", "none", "identity"),
    ],
)
def test_packed_model_gives_the_float_logits_and_predictions(arch, estimator, scale, activation):
    model = trained_like(arch, estimator, scale, activation)
    packed, report = pack_model(model, backend="torch")
    n_binary = {"resnet20": 20, "binary_densenet28": 23}[arch]
    assert len(report.packed) == n_binary and not report.kept_float
    assert sum(isinstance(m, PackedBinaryConv2d) for m in packed.modules()) == n_binary
    x = torch.randn(16, 1, 16, 16)
    with torch.no_grad():
        ref, out = model(x), packed(x)
    assert torch.allclose(ref, out, atol=1e-4, rtol=1e-4)  # the integer part is exact; float epilogue rounding
    assert torch.equal(ref.argmax(1), out.argmax(1))


def test_cpu_backend_matches_the_reference_backend():
    model = trained_like("resnet20")
    x = torch.randn(4, 1, 16, 16)
    with torch.no_grad():
        a = pack_model(model, backend="torch")[0](x)
        b = pack_model(model, backend="cpu")[0](x)
    assert torch.equal(a, b)


def test_bwn_and_adabin_layers_stay_float_and_are_reported():
    torch.manual_seed(0)
    model = create("resnet20", 1, 10, 8)
    binarize(model, "adabin", {})
    _, report = pack_model(model.eval())
    assert not report.packed and len(report.kept_float) == 20
    model = create("resnet20", 1, 10, 8)
    binarize(model, "ste", input_mode="real")
    _, report = pack_model(model.eval())
    assert set(report.kept_float.values()) == {"real or soft inputs (BWN)"}


def test_file_round_trip_size_and_errors(tmp_path):
    from omegaconf import OmegaConf

    model = trained_like("resnet20")
    packed, report = pack_model(model)
    conf = Path(__file__).resolve().parents[1] / "conf"
    cfg = OmegaConf.load(conf / "config.yaml")
    cfg = OmegaConf.merge(
        cfg,
        {"arch": OmegaConf.load(conf / "arch/resnet20.yaml"), "estimator": OmegaConf.load(conf / "estimator/ste.yaml")},
    )
    cfg.binarize.policy.keep_downsample = False
    cfg.binarize.policy.activation = "hardtanh"
    meta = {
        "arch": "resnet20",
        "estimator": "ste",
        "precision": "1w1a",
        "in_chans": 1,
        "num_classes": 10,
        "img_size": 16,
        "config": OmegaConf.to_yaml({k: v for k, v in cfg.items() if k != "defaults"}),
    }
    path = save_packed(packed, tmp_path / "m.safetensors", meta)
    # binary layers at 1 bit per weight (padded to 32-bit words per output channel)
    binary_float_bytes = sum(4 * dict(model.named_modules())[n].weight.numel() for n in report.packed)
    binary_packed_bytes = sum(m.weight_bits.numel() * 4 for m in packed.modules() if hasattr(m, "weight_bits"))
    assert binary_packed_bytes * 28 <= binary_float_bytes
    assert path.stat().st_size < sum(p.numel() * 4 for p in model.parameters()) / 10
    loaded, meta2 = load_packed(path, arch="resnet20")
    assert meta2["arch"] == "resnet20"
    x = torch.randn(8, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), packed(x))
    # the one-call API: the inference graph (fused residual epilogues), from a file or a run folder
    from bnn_lab.export import PACKED_FILE, load_for_inference
    from bnn_lab.export.residual_fusion import PackedConv2dResidual

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / PACKED_FILE).write_bytes(path.read_bytes())
    for where in (path, run_dir):
        deployed, meta3 = load_for_inference(where)
        assert meta3["num_classes"] == "10" and not deployed.training
        assert sum(isinstance(m, PackedConv2dResidual) for m in deployed.modules()) == 18
        with torch.no_grad():
            assert torch.equal(deployed(x).argmax(1), packed(x).argmax(1))
            torch.testing.assert_close(deployed(x), packed(x), atol=1e-4, rtol=1e-4)
    with pytest.raises(UserError, match="is a resnet20, not a vgg_small"):
        load_packed(path, arch="vgg_small")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(UserError, match="corrupt"):
        load_packed(bad)
    with pytest.raises(UserError, match="does not exist"):
        load_packed(tmp_path / "none.safetensors")


def test_evaluate_counts_correct_predictions():
    class Fixed(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.one_hot(x[:, 0, 0, 0].long(), 6).float()

    x = torch.zeros(4, 1, 2, 2)
    x[:, 0, 0, 0] = torch.tensor([0, 1, 2, 3])
    y = torch.tensor([0, 1, 5, 3])
    assert evaluate(Fixed(), [(x, y)])["acc"] == 0.75


def test_training_run_exports_and_bnn_lab_eval_agrees(run_cli, tmp_path):
    proc = run_cli("data=digits", "trainer.max_epochs=2", "logger=none", "trainer.enable_progress_bar=false")
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((proc.run_dir / "metrics.json").read_text())
    assert (proc.run_dir / "model.packed.safetensors").is_file()
    assert metrics["packed/layers"] == 20
    assert metrics["packed/test_acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)
    import subprocess
    import sys

    exe = Path(sys.executable).parent / "bnn-lab-eval"
    onnx_file = tmp_path / "export" / "model.onnx"
    out = subprocess.run(
        [str(exe), f"path={proc.run_dir}", "--onnx", str(onnx_file), "--lce", str(tmp_path / "lce.tflite"), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    assert result["packed/test_acc"] == pytest.approx(metrics["packed/test_acc"], abs=1e-9)
    # the ONNX file, run by onnxruntime, predicts what the packed model predicts on every test image
    assert onnx_file.is_file() and result["onnx/same_predictions"] == 1.0
    assert result["onnx/test_acc"] == pytest.approx(metrics["packed/test_acc"], abs=1e-9)
    # the LCE file: a TFLite flatbuffer ("TFL3") with LCE's binary operators, bit-packed weights
    lce = (tmp_path / "lce.tflite").read_bytes()
    assert lce[4:8] == b"TFL3" and result["lce/bytes"] == len(lce)
    assert lce.count(b"LceBconv2d") == 1 and lce.count(b"LceQuantize") == 1  # one operator code each
    assert len(lce) < (proc.run_dir / "model.packed.safetensors").stat().st_size * 2

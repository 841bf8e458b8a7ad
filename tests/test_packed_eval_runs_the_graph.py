"""A run's ``packed/test_acc`` is measured on the inference graph a user deploys
(``load_for_inference``), not on the plain packed model: the modules that run are the graph's."""

from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

import bnn_lab.export as export
from bnn_lab.assembly import build_data, build_model
from bnn_lab.export.residual_fusion import PackedConv2dResidual
from bnn_lab.training.run import _export
from bnn_lab.training.stages import Stage

CONF = str(Path(__file__).resolve().parents[1] / "conf")


def test_packed_test_acc_runs_the_inference_graph(tmp_path, monkeypatch):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(config_name="config", overrides=["data=digits", "export.device=cpu"])
    dm = build_data(cfg)
    dm.setup("test")
    torch.manual_seed(0)
    model, _ = build_model(cfg, dm.in_chans, dm.num_classes, dm.img_size)
    ran: set[str] = set()
    evaluate = export.evaluate

    def watched(module, loader, **kwargs):
        hooks = [m.register_forward_hook(lambda m, i, o: ran.add(type(m).__name__)) for m in module.modules()]
        try:
            return evaluate(module, loader, **kwargs)
        finally:
            for h in hooks:
                h.remove()

    monkeypatch.setattr(export, "evaluate", watched)
    metrics = {}
    _export(cfg, model.eval(), Stage("main", "1w1a", 1), dm, tmp_path, metrics)
    # the traced graph ran, with the binary convolutions' residual epilogues fused (the plain packed
    # ResNet-20 has neither: it is a timm module tree of PackedBinaryConv2d, BatchNorm2d and adds)
    assert {"GraphModule", PackedConv2dResidual.__name__} <= ran and "BatchNorm2d" not in ran, ran
    assert metrics["packed/layers"] == 20
    with torch.no_grad():  # the recorded accuracy is the graph's, which predicts as the packed model
        x, y = (torch.cat(t) for t in zip(*dm.test_dataloader()))
        packed, _ = export.pack_model(model.eval())
        predicted = export.inference_model(packed)(x).argmax(1)
        assert torch.equal(predicted, packed(x).argmax(1))
        assert metrics["packed/test_acc"] == (predicted == y).sum().item() / len(y)

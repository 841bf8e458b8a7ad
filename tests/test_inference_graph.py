"""The inference graph: packed convolutions hand packed bits to the next one (integer
thresholds in place of epilogue, BatchNorm, activation and sign) and the logits do not change."""

import copy
import dataclasses

import pytest
import torch
from torch import nn

from bnn_lab.estimators import build as build_estimator
from bnn_lab.export import graph as graph_module
from bnn_lab.export import pack_model
from bnn_lab.export.graph import GraphReport, PackedConv2dToBits, build_inference_graph
from bnn_lab.export.packed_layers import PackedBinaryConv2d
from bnn_lab.export.residual_fusion import PackedConv2dResidual
from bnn_lab.kernels import PackedConv2dInput, pack_conv2d_input
from bnn_lab.layers import BinaryConv2d
from bnn_lab.models import create
from bnn_lab.surgery import binarize


def _with_statistics(model, shape):
    model.train()
    with torch.no_grad():  # BatchNorm statistics that are not the identity
        for _ in range(2):
            model(torch.randn(8, *shape))
    return model.eval()


@pytest.mark.parametrize(
    "estimator,scale,activation",
    [("ste", "none", "hardtanh"), ("rsign", "learned", "rprelu"), ("ste", "xnor", "relu"), ("ste", "learned", "prelu")],
)
def test_resnet18_blocks_hand_bits_and_keep_the_packed_logits(estimator, scale, activation):
    torch.manual_seed(0)
    model = create("resnet18", 3, 10, 32)
    binarize(model, estimator, {"activation": activation, "keep_downsample": True}, scale=scale)
    model = _with_statistics(model, (3, 32, 32))
    packed, _ = pack_model(model, backend="cpu")
    graph, report = build_inference_graph(packed, fold_bn=False)  # same float operations as the plain model
    assert len(report.bit_links) == 8 and not report.not_linked  # conv1 -> conv2 of each basic block
    assert sum(isinstance(m, PackedConv2dToBits) for m in graph.modules()) == 8
    folded, folded_report = build_inference_graph(packed)  # before the hooks below (a copy would keep them)
    x = torch.randn(16, 3, 32, 32)
    # the bits each link hands over are the packed signs of what the float path gives the next conv
    float_bits, handed = {}, {}
    plain_modules, graph_modules = dict(packed.named_modules()), dict(graph.named_modules())
    for _, nxt in report.bit_links:

        def keep_float(m, args, name=nxt):
            u = args[0] if m.threshold is None else args[0] - m.threshold.view(1, -1, 1, 1)
            float_bits[name] = pack_conv2d_input(u).bits

        plain_modules[nxt].register_forward_pre_hook(keep_float)
        graph_modules[nxt].register_forward_pre_hook(lambda m, args, name=nxt: handed.__setitem__(name, args[0]))
    with torch.no_grad():
        ref, plain, out = model(x), packed(x), graph(x)
    for name, bits in float_bits.items():
        assert isinstance(handed[name], PackedConv2dInput)
        inside = handed[name].unpadded()
        assert torch.equal(inside[..., : bits.shape[-1]], bits), name
        assert not inside[..., bits.shape[-1] :].any()  # the padding words stay zero
        # written inside the next convolution's zero border (3x3, padding 1): the border is all zero bits
        assert handed[name].pads == (1, 1, 1, 1)
        assert handed[name].shape == (16, handed[name].channels, *inside.shape[1:3])
        border = handed[name].bits.clone()
        border[:, 1:-1, 1:-1] = 0
        assert not border.any()
    assert torch.equal(out, plain)  # the same integers reach the same float tail
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    # with the BatchNorms after the second convs folded into them: float rounding only
    assert folded_report.folded_batchnorms == 8 and len(folded_report.bit_links) == 8
    assert ").bn1(" not in folded.code and ").bn2(" not in folded.code  # the blocks' BNs
    # the stem's and the three downsampling shortcuts' BNs, folded into their float convolutions
    assert folded_report.folded_float_batchnorms == 4 and "self.bn1(" not in folded.code
    # every block's conv2 + shortcut addition (+ a clamping activation): one packed convolution's epilogue
    assert folded_report.fused_residuals == 8
    # each block's output also packed for the next block's conv1 (not past an RPReLU/PReLU in between)
    assert folded_report.residual_bits == (7 if activation in ("hardtanh", "relu") else 0)
    assert ("act2" in folded.code) == (activation not in ("hardtanh", "relu"))
    assert 'downsample, "1")' not in folded.code
    with torch.no_grad():
        out = folded(x)
    assert torch.equal(out.argmax(1), ref.argmax(1))
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


def test_a_batchnorm_folded_into_a_binary_convolution_gives_the_float_blocks_bit_for_bit(monkeypatch):
    torch.manual_seed(0)
    model = create("resnet18", 3, 10, 32)
    binarize(model, "ste", {"keep_downsample": True})
    for m in model.modules():  # BatchNorms that are not the identity (each block's last starts at zero)
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.uniform_(0.2, 2.0)
                m.bias.uniform_(-1.0, 1.0)
    model = _with_statistics(model, (3, 32, 32))
    packed, _ = pack_model(model, backend="cpu")
    # the float convolutions keep their BatchNorm modules: each block reads what the float model's reads
    without = tuple(r for r in graph_module.REWRITES if r.field != "folded_float_batchnorms")
    monkeypatch.setattr(graph_module, "REWRITES", without)
    graph, report = build_inference_graph(packed)
    assert report.folded_batchnorms == 8 and report.fused_residuals == 8
    want, got = {}, {}
    for i in range(1, 5):
        for j in range(2):
            model.get_submodule(f"layer{i}.{j}").register_forward_hook(
                lambda m, args, out, k=(i, j): want.__setitem__(k, out)
            )
            getattr(graph, f"layer{i}_{j}_conv2_residual").register_forward_hook(
                lambda m, args, out, k=(i, j): got.__setitem__(k, out[0] if isinstance(out, tuple) else out)
            )
    with torch.no_grad():
        x = torch.randn(8, 3, 32, 32)
        graph(x), model(x)
    for k in want:  # conv -> BatchNorm -> + shortcut -> ReLU, as the float modules round it
        assert torch.equal(got[k], want[k]), k


def test_the_graph_runs_without_no_grad_as_with_it():
    torch.manual_seed(0)
    model = create("resnet18", 3, 10, 32)
    binarize(model, "ste", {"keep_downsample": True})
    packed, _ = pack_model(_with_statistics(model, (3, 32, 32)), backend="cpu")
    graph, report = build_inference_graph(packed)
    assert report.fused_residuals == 8  # the downsampling shortcuts' float outputs reach packed epilogues
    x = torch.randn(1, 3, 32, 32)
    out = graph(x)  # grad mode on, as a user's first call may be: the float shortcuts record no graph
    with torch.no_grad():
        want = graph(x)
    assert not out.requires_grad and torch.equal(out, want)


def test_gating_scales_and_per_conv_shortcuts_keep_the_float_path():
    torch.manual_seed(0)
    model = create("resnet18", 3, 10, 32)
    binarize(model, "ste", {"activation": "hardtanh", "keep_downsample": True}, scale="gating")
    graph, report = build_inference_graph(pack_model(_with_statistics(model, (3, 32, 32)))[0])
    assert not report.bit_links and set(report.not_linked.values()) == {"gating scale (data-dependent)"}
    model = create("resnet20", 1, 10, 8)  # a shortcut around every conv: every output is also added
    binarize(model, "ste", {"activation": "hardtanh", "keep_downsample": False})
    _, report = build_inference_graph(pack_model(model.eval())[0])
    assert not report.bit_links


class _TwoConvs(nn.Module):
    def __init__(self, prelu_slope: float, threshold: float) -> None:
        super().__init__()
        self.conv1 = BinaryConv2d.from_float(
            nn.Conv2d(4, 8, 3, padding=1, bias=False), build_estimator("ste"), build_estimator("ste")
        )
        self.bn = nn.BatchNorm2d(8)
        self.act = nn.PReLU(8, init=prelu_slope)
        rsign = build_estimator("rsign", channels=8, role="input")
        with torch.no_grad():
            rsign.threshold.fill_(threshold)
        self.conv2 = BinaryConv2d.from_float(nn.Conv2d(8, 8, 3, padding=1, bias=False), build_estimator("ste"), rsign)

    def forward(self, x):
        return self.conv2(self.act(self.bn(self.conv1(x))))


def test_a_sign_that_is_not_one_step_in_the_integer_output_is_not_folded():
    torch.manual_seed(0)
    # prelu(y) >= t with a negative slope and t > 0 holds for y >= t and for y <= -2t: two steps
    model = _with_statistics(_TwoConvs(prelu_slope=-0.5, threshold=0.5), (4, 6, 6))
    graph, report = build_inference_graph(pack_model(model)[0])
    assert not report.bit_links and "not one step" in report.not_linked["conv1"]
    # with a positive slope the same chain is one step per channel, folded, and still exact
    model = _with_statistics(_TwoConvs(prelu_slope=0.25, threshold=0.5), (4, 6, 6))
    graph, report = build_inference_graph(pack_model(model)[0])
    assert report.bit_links == [("conv1", "conv2")]
    x = torch.randn(32, 4, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(graph(x), model(x), atol=1e-4, rtol=1e-4)


def test_fused_convolutions_follow_constants_replaced_after_their_first_call():
    """The fused modules keep their kernel epilogue (constants converted once): a bias or threshold
    replaced by a new tensor afterwards (as a reassignment or ``.to()`` gives) is used all the same,
    as the torch backend, which reads the tensors on every call, computes it."""
    torch.manual_seed(0)
    model = create("resnet18", 3, 10, 32)
    binarize(model, "ste", {"activation": "hardtanh", "keep_downsample": True})
    packed, _ = pack_model(_with_statistics(model, (3, 32, 32)), backend="cpu")
    graph, report = build_inference_graph(packed)
    assert report.fused_residuals == 8 and len(report.bit_links) == 8
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        before = graph(x)
        changed = 0
        for m in graph.modules():
            if isinstance(m, PackedBinaryConv2d) and m.bias is not None:  # the residual convs' folded BN
                m.bias, changed = m.bias + 0.25, changed + 1
            elif isinstance(m, PackedConv2dToBits):
                m.thr, changed = m.thr + 3, changed + 1
        assert changed == 16
        after = graph(x)
        reference = copy.deepcopy(graph)
        for m in reference.modules():
            if isinstance(m, PackedBinaryConv2d):
                m.backend = "torch"
        expected = reference(x)
    assert not torch.allclose(after, before)
    torch.testing.assert_close(after, expected, atol=1e-4, rtol=1e-4)


def test_the_stem_pooling_runs_in_one_pass_and_hands_its_bits_to_the_first_block():
    """A ResNet stem's max-pooling and clamping activation become one call that also packs the first
    binary convolution's input: those bits are the signs of the float stream it passes on."""
    torch.manual_seed(0)
    model = create("resnet18", 3, 10, 96)  # 96 px keeps the stem's max-pooling
    binarize(model, "ste", {"activation": "hardtanh", "keep_downsample": True})
    packed, _ = pack_model(_with_statistics(model, (3, 96, 96)), backend="cpu")
    graph, report = build_inference_graph(packed)
    assert report.pools_first == 1 and report.fused_pools == 1 and report.pool_bits == 1
    assert "self.maxpool(" not in graph.code and "self.act1(" not in graph.code
    seen = {}
    graph.layer1_0_conv1_to_bits.register_forward_pre_hook(lambda m, args: seen.__setitem__("bits", args[0]))
    graph.layer1_0_conv2_residual.register_forward_pre_hook(lambda m, args: seen.__setitem__("stream", args[1]))
    x = torch.randn(4, 3, 96, 96)
    with torch.no_grad():
        ref, out = model(x), graph(x)
    stream, bits = seen["stream"], seen["bits"]
    assert isinstance(bits, PackedConv2dInput) and bits.pads == (1, 1, 1, 1)  # layer1.0.conv1's padding
    assert stream.min() >= -1 and stream.max() <= 1 and (stream.abs() == 1).any()  # clamped by the fused Hardtanh
    want = pack_conv2d_input(stream).bits
    inside = bits.unpadded()
    assert torch.equal(inside[..., : want.shape[-1]], want) and not inside[..., want.shape[-1] :].any()
    assert torch.equal(out.argmax(1), ref.argmax(1))
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


def test_a_gated_convolution_gets_its_real_input_not_packed_bits():
    """A gating scale (Real-to-Binary's) reads the convolution's real input: no rewrite may hand it
    packed bits instead (the stem pooling and the residual epilogues before it included)."""
    torch.manual_seed(0)
    model = create("resnet18", 3, 10, 224)  # 224 px: the ImageNet stem, whose pooling could pack bits
    binarize(model, "ste", {"activation": "hardtanh", "keep_downsample": True}, scale="gating")
    model.train()
    with torch.no_grad():  # BatchNorm statistics that are not the identity
        model(torch.randn(2, 3, 224, 224))
    packed, _ = pack_model(model.eval(), backend="cpu")
    graph, report = build_inference_graph(packed)
    assert report.fused_pools == 1 and report.pool_bits == 0 and report.residual_bits == 0 and not report.bit_links
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(graph(x), packed(x), atol=1e-4, rtol=1e-4)


def test_the_rewrites_table_drives_the_graph(monkeypatch):
    """Each rewrite reports into a field of GraphReport; taking one out of REWRITES leaves its
    pattern in the graph and the logits as they were (the passes are independent entries)."""
    assert {r.field for r in graph_module.REWRITES} - {None} <= {f.name for f in dataclasses.fields(GraphReport)}
    torch.manual_seed(0)
    model = create("resnet18", 3, 10, 32)
    binarize(model, "ste", {"activation": "hardtanh", "keep_downsample": True}, scale="none")
    packed, _ = pack_model(_with_statistics(model, (3, 32, 32)), backend="cpu")
    x = torch.randn(4, 3, 32, 32)
    whole, report = build_inference_graph(packed)
    assert report.fused_residuals == 8
    without = tuple(r for r in graph_module.REWRITES if r.field not in ("fused_residuals", "residual_bits"))
    monkeypatch.setattr(graph_module, "REWRITES", without)
    partial, partial_report = build_inference_graph(packed)
    assert partial_report.fused_residuals == 0 and partial_report.residual_bits == 0
    assert not any(isinstance(m, PackedConv2dResidual) for m in partial.modules())
    assert any(isinstance(m, PackedConv2dResidual) for m in whole.modules())
    with torch.no_grad():
        torch.testing.assert_close(partial(x), whole(x), atol=1e-4, rtol=1e-4)

"""A batch's large float convolutions dealt image by image to the kernel threads
(``thread_pools.deal``, ``export.image_split``): every image once, the same numbers as the whole
convolution, no wait for a helper that never runs."""

import threading
import time

import pytest
import torch
from torch import nn

from bnn_lab import kernels
from bnn_lab.bench.model import _outermost_leaves, profile
from bnn_lab.export import graph as graph_module
from bnn_lab.export import image_split, pack_model
from bnn_lab.export.graph import build_inference_graph
from bnn_lab.export.image_split import ImageSplitConv2d, ImageSplitConvPool
from bnn_lab.kernels import thread_pools
from bnn_lab.kernels.registry import has_numba
from bnn_lab.models import create
from bnn_lab.surgery import binarize

needs_numba = pytest.mark.skipif(not has_numba(), reason="needs numba")


@pytest.fixture
def two_kernel_threads(monkeypatch):
    """The state inside the graph's forward on two threads: torch on the caller, two kernel threads."""
    monkeypatch.setattr(thread_pools, "kernel_threads", lambda: 2)


def test_deal_runs_every_item_once_on_the_caller_and_a_helper(two_kernel_threads):
    seen, lock = [], threading.Lock()

    def item(i):
        time.sleep(0.02)  # long enough that the helper, woken at the start, takes some (on a busy machine too)
        with lock:
            seen.append((i, threading.current_thread().name))

    thread_pools.deal(item, 12)
    assert sorted(i for i, _ in seen) == list(range(12))
    assert {name for _, name in seen} == {threading.current_thread().name, "bnn-lab-float-helper"}


def test_deal_does_not_wait_for_a_helper_that_never_runs(two_kernel_threads, monkeypatch):
    class Stalled:  # a helper that never gets a core: its jobs are never picked up
        class jobs:
            put = staticmethod(lambda job: None)

    monkeypatch.setattr(thread_pools, "_helpers", [Stalled()])
    done = []
    thread_pools.deal(done.append, 5)
    assert done == [0, 1, 2, 3, 4]


def test_deal_raises_what_an_item_raised_and_runs_in_turn_without_kernel_threads(two_kernel_threads, monkeypatch):
    def item(i):
        if i == 3:
            raise ValueError("image 3 is broken")

    with pytest.raises(ValueError, match="image 3 is broken"):
        thread_pools.deal(item, 8)
    monkeypatch.setattr(thread_pools, "kernel_threads", lambda: None)
    names = []
    thread_pools.deal(lambda i: names.append(threading.current_thread().name), 4)
    assert names == [threading.current_thread().name] * 4


def _spy_deal(monkeypatch) -> list[int]:
    calls, real = [], thread_pools.deal
    monkeypatch.setattr(thread_pools, "deal", lambda fn, n: (calls.append(n), real(fn, n))[1])
    return calls


@pytest.mark.parametrize("channels_last", [True, False])
def test_a_split_convolution_equals_the_whole_one(two_kernel_threads, monkeypatch, channels_last):
    monkeypatch.setattr(image_split, "MIN_MACS_PER_IMAGE", 0)
    calls = _spy_deal(monkeypatch)
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 16, 5, stride=2, padding=2)
    split = ImageSplitConv2d.from_conv(conv)
    x = torch.randn(5, 3, 40, 36)
    if channels_last:
        x, conv, split = (t.to(memory_format=torch.channels_last) for t in (x, conv, split))
    with torch.no_grad():
        want, got = conv(x), split(x)
    assert calls == [5]
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert got.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    with torch.no_grad():
        split(x[:1])  # one image: nothing to deal
    split(x)  # autograd on: the plain convolution
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert split(x).dtype == torch.bfloat16  # autocast (per thread): the plain convolution
    monkeypatch.setattr(image_split, "MIN_MACS_PER_IMAGE", 10**9)
    with torch.no_grad():
        split(x)  # not worth handing out
    assert calls == [5]


@needs_numba
def test_pooling_images_as_they_come_equals_pooling_the_batch():
    torch.manual_seed(0)
    x = torch.randn(6, 40, 17, 15).contiguous(memory_format=torch.channels_last)
    t = torch.randn(40) * 0.1
    want, want_bits = kernels.max_pool2d_clamp(x, 3, 2, 1, (-1.0, 1.0), bits_threshold=t, out_padding=(1, 1, 1, 1))
    got, got_bits = kernels.max_pool2d_clamp_by_image(
        lambda i: x[i : i + 1],
        6,
        (40, 17, 15),
        3,
        2,
        1,
        (-1.0, 1.0),
        bits_threshold=t,
        out_padding=(1, 1, 1, 1),
        run=lambda fn, n: [fn(i) for i in reversed(range(n))],  # any order
    )
    assert torch.equal(got, want) and torch.equal(got_bits.bits, want_bits.bits) and got_bits.pads == want_bits.pads
    with pytest.raises(ValueError, match="image 0: expected channels-last float32"):
        kernels.max_pool2d_clamp_by_image(lambda i: x[i : i + 1].contiguous(), 1, (40, 17, 15), 3, 2, 1)


@needs_numba
def test_a_resnet_stem_deals_its_images_and_pools_each_one_as_the_graph_did(two_kernel_threads, monkeypatch):
    """At 96 px the stem is below the size worth dealing; with the bar at 0 the graph joins the stem
    convolution and its pooling, deals the batch, and hands the first block the same bits and stream."""
    monkeypatch.setattr(image_split, "MIN_MACS_PER_IMAGE", 0)
    torch.manual_seed(0)
    model = create("resnet18", 3, 10, 96)
    binarize(model, "ste", {"activation": "hardtanh", "keep_downsample": True})
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(8, 3, 96, 96))
    packed, _ = pack_model(model.eval(), backend="cpu")
    graph, report = build_inference_graph(packed)
    assert report.split_conv_pools == 1 and report.split_convs == 4  # the stem and three shortcuts
    assert isinstance(graph.conv1_pooled, ImageSplitConvPool)
    without = tuple(r for r in graph_module.REWRITES if r.field not in ("split_convs", "split_conv_pools"))
    monkeypatch.setattr(graph_module, "REWRITES", without)
    plain, plain_report = build_inference_graph(packed)
    assert plain_report.split_conv_pools == 0 and not any(isinstance(m, ImageSplitConv2d) for m in plain.modules())
    by_image, real = [], kernels.max_pool2d_clamp_by_image
    monkeypatch.setattr(kernels, "max_pool2d_clamp_by_image", lambda *a, **k: (by_image.append(a[1]), real(*a, **k))[1])
    handed = {}
    for name, g in (("split", graph), ("plain", plain)):
        g.layer1_0_conv1_to_bits.register_forward_pre_hook(lambda m, args, n=name: handed.__setitem__(n, args[0]))
    x = torch.randn(4, 3, 96, 96)
    with torch.no_grad():
        out, ref, want = graph(x), plain(x), model(x)
    assert by_image == [4]
    assert torch.equal(handed["split"].bits, handed["plain"].bits)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert torch.equal(out.argmax(1), want.argmax(1))
    for batch in (x, x[:1]):  # bnn-lab-bench model --profile; one image runs the joined stem's children
        spent = profile(graph, batch, torch.device("cpu"), runs=1)
        assert spent["ImageSplitConvPool"] > 0  # its time, not "between modules"
        assert "PooledClamp" not in spent  # nor its pooling counted a second time
    timed = _outermost_leaves(graph)
    assert graph.conv1_pooled in timed and graph.conv1_pooled.conv not in timed
    assert sum(isinstance(m, ImageSplitConv2d) for m in timed) == 3  # the shortcuts


def test_a_forked_child_deals_on_helpers_of_its_own(two_kernel_threads):
    import os

    thread_pools.deal(lambda i: time.sleep(0.002), 4)  # the parent's helper exists
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its helper threads must be its own, or nothing would run there
        names = []
        thread_pools.deal(lambda i: (time.sleep(0.02), names.append(threading.current_thread().name)), 12)
        os.write(write, b"1" if len(names) == 12 and "bnn-lab-float-helper" in names else b"0")
        os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.waitpid(pid, 0)
    assert answer == b"1"


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
def test_helpers_run_in_the_callers_grad_mode(two_kernel_threads, monkeypatch, mode):
    """Grad and inference mode are per thread: a helper that ran its images with autograd on would
    record a graph (and refuse inference tensors)."""
    monkeypatch.setattr(image_split, "MIN_MACS_PER_IMAGE", 0)
    calls = _spy_deal(monkeypatch)
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 8, 3, padding=1)
    split = ImageSplitConv2d.from_conv(conv)
    context = torch.no_grad if mode == "no_grad" else torch.inference_mode
    with context():
        x = torch.randn(16, 3, 64, 64)
        want, got = conv(x), split(x)
    assert calls == [16]
    assert not got.requires_grad and got.grad_fn is None
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)

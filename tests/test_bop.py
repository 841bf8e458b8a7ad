"""Bop (bnn_lab/optim/bop.py): the flip rule against a step-by-step numpy computation, Adam
on the real parameters untouched by it, and one epoch on digits through the ``bnn-lab``
code path (learning that comes from the flips: the same run with flips disabled stays at
chance)."""

import copy
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bnn_lab.errors import ConfigError
from bnn_lab.models import create
from bnn_lab.optim import GroupedOptimizer, build_optimizer, latent_parameters
from bnn_lab.optim.bop import Bop
from bnn_lab.surgery import binarize


def numpy_bop(w0, grads, gamma, tau):
    """Bop by hand: w starts as sign(w0) (+1 at 0); returns the weights after each step and
    the indices flipped at each step."""
    w = np.where(w0 >= 0, 1.0, -1.0)
    m = np.zeros_like(w)
    history, flipped = [], []
    for g in grads:
        m = (1 - gamma) * m + gamma * g
        flip = [i for i in range(len(w)) if abs(m[i]) > tau and np.sign(m[i]) == np.sign(w[i])]
        for i in flip:
            w[i] = -w[i]
        history.append(w.copy())
        flipped.append(flip)
    return history, flipped


def test_flips_exactly_where_the_rule_says():
    w0 = np.array([0.3, -0.2, 0.0, -0.5, 0.1, -0.7], dtype=np.float32)
    grads = np.array(
        [
            [0.5, -0.1, 0.05, 0.3, -0.4, -0.25],
            [0.5, -0.4, 0.30, 0.3, -0.4, -0.25],
            [-0.6, 0.2, 0.30, -0.9, 0.1, 0.50],
            [-0.6, 0.2, -0.8, -0.9, 0.1, 0.50],
        ],
        dtype=np.float32,
    )
    gamma, tau = 0.5, 0.2
    expected, flipped = numpy_bop(w0, grads.astype(np.float64), gamma, tau)
    # by hand: step 1 m = g / 2, only |m_0| = 0.25 > 0.2 (m_4 = -0.2 is not above it); step 4
    # m_3 = -0.619 and m_5 = 0.328 are strong but push w_3 = +1, w_5 = -1 away from zero: kept
    assert flipped == [[0], [1], [2, 3], [0, 2]]

    p = torch.nn.Parameter(torch.tensor(w0))
    opt = Bop([p], gamma=gamma, threshold=tau)
    assert p.tolist() == [1.0, -1.0, 1.0, -1.0, 1.0, -1.0]  # sign of the latent weights, +1 at 0
    for g, w in zip(grads, expected):
        p.grad = torch.tensor(g)
        opt.step()
        assert p.tolist() == w.tolist()
    m = (1 - gamma) ** np.arange(4)[::-1] @ grads.astype(np.float64) * gamma
    assert torch.allclose(opt.state[p]["momentum"].double(), torch.tensor(m), atol=1e-7)
    assert set(opt.state_dict()["state"][0]) == {"momentum"}


def test_bop_refuses_the_real_parameters_and_weight_decay():
    model = binary_resnet20()
    with pytest.raises(ConfigError, match="optimizer.latent=bop"):
        build_optimizer(model, {"name": "bop"})
    with pytest.raises(ConfigError, match="latent_weight_decay"):
        build_optimizer(model, {"name": "adam", "latent_weight_decay": 1e-4, "latent": "bop"})


def binary_resnet20():
    model = create("resnet20", 1, 10, 8)
    binarize(model, "ste", {"activation": "hardtanh"})
    return model


def test_real_parameters_follow_adam_and_latent_ones_the_flip_rule():
    """``optimizer.latent=bop`` (the bare name) with Adam: three steps equal a plain Adam over
    the real parameters of a copy and the flip rule applied by hand to its binary weights."""
    torch.manual_seed(0)
    model = binary_resnet20()
    latent_ids = {id(p) for p in latent_parameters(model.modules())}
    marked = {n for n, p in model.named_parameters() if id(p) in latent_ids}
    gamma, tau = 0.1, 1e-3
    opt = build_optimizer(
        model, {"name": "adam", "lr": 0.01, "latent": {"name": "bop", "gamma": gamma, "threshold": tau}}
    )
    assert isinstance(opt, GroupedOptimizer) and type(opt.parts[1]) is Bop
    assert all(p.abs().eq(1).all() for n, p in model.named_parameters() if n in marked)
    twin = copy.deepcopy(model)
    real = [p for n, p in twin.named_parameters() if n not in marked]
    latent = [p for n, p in twin.named_parameters() if n in marked]
    adam = torch.optim.Adam([{"params": real, "weight_decay": 0.0}], lr=0.01)
    momenta = [torch.zeros_like(p) for p in latent]
    flips = 0
    for _ in range(3):
        x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        twin.zero_grad()
        F.cross_entropy(twin(x), y).backward()
        adam.step()
        with torch.no_grad():
            for p, m in zip(latent, momenta):
                m.mul_(1 - gamma).add_(p.grad, alpha=gamma)  # the same float rounding as the optimizer
                flip = (m.abs() > tau) & (torch.sign(m) == torch.sign(p))
                flips += int(flip.sum())
                p[flip] = -p[flip]
        mine = dict(model.named_parameters())
        for name, p in twin.named_parameters():
            assert torch.equal(mine[name], p), name
    assert flips > 100  # the check compares weights that did flip


def test_bop_one_epoch_on_digits_learns_from_its_flips(run_cli, tmp_path):
    """``optimizer=bop`` (Adam on the real parameters, Bop's defaults gamma 1e-4, tau 1e-8 on
    the binary weights): one epoch on digits is far above chance (0.67 when written); with
    flips disabled (tau = 1e9) the real parameters alone leave it at chance (0.09)."""
    common = [
        "data=digits",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
        "logger=none",
        "export.packed=false",
        "optimizer=bop",
    ]
    proc = run_cli(*common, run_dir=tmp_path / "bop")
    assert proc.returncode == 0, proc.stderr[-3000:]
    frozen = run_cli(*common, "optimizer.latent.threshold=1e9", run_dir=tmp_path / "no_flips")
    assert frozen.returncode == 0, frozen.stderr[-3000:]
    acc = json.loads((tmp_path / "bop/metrics.json").read_text())["test/acc"]
    acc_frozen = json.loads((tmp_path / "no_flips/metrics.json").read_text())["test/acc"]
    assert acc > 0.4 and acc_frozen < 0.2, (acc, acc_frozen)
    w = torch.load(tmp_path / "bop/final_weights.pt")["layer2.0.conv1.weight"]
    w0 = torch.load(tmp_path / "no_flips/final_weights.pt")["layer2.0.conv1.weight"]
    assert w.abs().eq(1).all() and w0.abs().eq(1).all()  # Bop's weights stay +-1
    assert 0 < int((w != w0).sum()) < w.numel()  # the same start (seed 42), some signs flipped, not all

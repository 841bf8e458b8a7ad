"""``consecutive_kd``: per-sample teacher weights against a numpy computation, the assistant
schedule, and a digits run taught by two small teachers trained first."""

import json

import numpy as np
import pytest
import torch

from bnn_lab.errors import ConfigError
from bnn_lab.losses import LossInputs, build_term, build_terms
from bnn_lab.losses.consecutive_kd import consecutive_kd_loss, soft_cross_entropies, teacher_weights


def np_log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def test_weights_are_the_softmax_of_the_detached_per_teacher_cross_entropies():
    rng = np.random.default_rng(0)
    s, t1, t2 = (rng.normal(size=(5, 4)) * 2 for _ in range(3))
    log_p = np_log_softmax(s)
    ce = np.stack([-(np.exp(np_log_softmax(t)) * log_p).sum(-1) for t in (t1, t2)], axis=1)  # (5, 2)
    a = np.exp(ce) / np.exp(ce).sum(1, keepdims=True)
    student = torch.tensor(s, requires_grad=True)
    teachers = [torch.tensor(t1), torch.tensor(t2)]
    got_ce = soft_cross_entropies(student, teachers)
    np.testing.assert_allclose(got_ce.detach().numpy(), ce, rtol=1e-12)
    np.testing.assert_allclose(teacher_weights(got_ce).numpy(), a, rtol=1e-12)
    loss = consecutive_kd_loss(student, teachers)
    np.testing.assert_allclose(loss.item(), (a * ce).sum(1).mean(), rtol=1e-12)
    loss.backward()
    # the weights are constants: d/ds of mean_n sum_t a_t CE_t = sum_t a_t (softmax(s) - softmax(z_t)) / N
    p = np.exp(log_p)
    grad = sum(a[:, [i]] * (p - np.exp(np_log_softmax(t))) for i, t in enumerate((t1, t2))) / len(s)
    np.testing.assert_allclose(student.grad.numpy(), grad, rtol=1e-10, atol=1e-12)


def test_assistants_switch_at_equal_splits_by_default_and_at_the_configured_points():
    term = build_term("consecutive_kd", {"teachers": ["a", "b", "c"]})
    assert term.switch_at == pytest.approx([1 / 3, 2 / 3])
    assert [term.active(p)[0] for p in (0.0, 0.33, 1 / 3, 0.5, 0.66, 2 / 3, 0.99)] == list("aabbbcc")
    term = build_term("consecutive_kd", {"teachers": ["a", "b"], "switch_at": [0.25], "main": "m"})
    assert term.active(0.2) == ["a", "m"] and term.active(0.25) == ["b", "m"] and term.active(0.9) == ["b", "m"]
    with pytest.raises(ConfigError, match="switch_at"):
        build_term("consecutive_kd", {"teachers": ["a", "b"], "switch_at": [0.5, 0.7]})
    with pytest.raises(ConfigError, match="teachers"):
        build_term("consecutive_kd", {"teachers": []})


class Constant(torch.nn.Module):
    def __init__(self, row):
        super().__init__()
        self.row = torch.tensor(row)

    def forward(self, x):
        return self.row.expand(len(x), -1)


def test_each_phase_is_taught_by_its_assistant():
    nets = {"a": Constant([4.0, 0.0, 0.0]), "b": Constant([0.0, 0.0, 4.0]), "m": Constant([0.0, 4.0, 0.0])}
    loaded = []
    spec = {"consecutive_kd": {"teachers": ["a", "b"], "main": "m"}}
    with pytest.raises(ConfigError, match="loads trained networks"):
        build_terms(spec)  # the loader is handed over, never looked up in a global
    (term,) = build_terms(spec, network_loader=lambda path, size: loaded.append((path, size)) or nets[path])
    x, logits = torch.zeros(3, 1, 8, 8), torch.randn(3, 3)
    for progress, assistant in ((0.1, "a"), (0.6, "b")):
        got = term(LossInputs(x, torch.zeros(3, dtype=torch.long), logits, torch.nn.Identity(), progress))
        expected = consecutive_kd_loss(logits, [nets[assistant](x), nets["m"](x)])
        torch.testing.assert_close(got, expected)
    assert loaded == [("a", 8), ("m", 8), ("b", 8)]  # each loaded once, when first needed, at the input size


@pytest.mark.slow
def test_digits_student_taught_by_two_teachers_trained_first(run_cli, tmp_path):
    """Two full-precision teachers (ResNet-20 and VGG-Small, one epoch each) teach a 1W1A
    ResNet-20 for two epochs, one teacher an epoch, with no label loss; it beats chance and
    packs exactly."""
    common = ["data=digits", "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "logger=none"]
    teachers = []
    for arch in ("resnet20", "vgg_small"):
        proc = run_cli(f"arch={arch}", "precision=fp", *common, run_dir=tmp_path / arch)
        assert proc.returncode == 0, proc.stderr[-3000:]
        teachers.append(str(tmp_path / arch))
    proc = run_cli(
        "loss=[consecutive_kd]",
        f"loss.consecutive_kd.teachers=[{','.join(teachers)}]",
        "data=digits",
        "trainer.max_epochs=2",
        "trainer.enable_progress_bar=false",
        "logger=csv",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.loads((proc.run_dir / "metrics.json").read_text())
    assert m["test/acc"] > 0.2  # chance: 0.1 (it reached 0.33)
    assert m["packed/test_acc"] == pytest.approx(m["test/acc"], abs=1e-6)
    config = (proc.run_dir / "config.yaml").read_text()
    assert "ce: 0.0" in config

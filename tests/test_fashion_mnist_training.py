"""A short real training run of the default 1W1A network on Fashion-MNIST (Debian's copy)."""

import json

import pytest

from bnn_lab.data.fashion_mnist import DEBIAN_DIR


@pytest.mark.slow
@pytest.mark.skipif(not DEBIAN_DIR.is_dir(), reason="needs Debian's dataset-fashion-mnist (.ci/run installs it)")
def test_default_network_learns_fashion_mnist_in_200_steps(run_cli):
    proc = run_cli(
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=200",
        "trainer.limit_test_batches=20",
        "trainer.enable_progress_bar=false",
        "logger=csv",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((proc.run_dir / "metrics.json").read_text())
    assert metrics["data"] == "fashion_mnist" and metrics["global_steps"] == 200
    assert metrics["test/acc"] > 0.70  # chance is 0.10

"""``bnn-lab data=image_folder data.root=<folder>`` end to end, with nothing else about the
data given: PNG trees in grey and in colour train, the network gets the folder's classes and
channels, and a run killed with SIGKILL in the middle of an epoch resumes bit-identical."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from image_trees import write_tree
from test_first_run import third_party_warnings
from test_resume import assert_same_run, bnn_lab, kill_mid_epoch

CONF = Path(__file__).resolve().parents[1] / "conf"
FAST = ["logger=csv", "export.packed=false", "trainer.max_epochs=1", "data.batch_size=16"]


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    write_tree(root / "grey_digits", {"train": 40, "val": 8, "test": 8}, classes=6, size=16)
    write_tree(root / "colour_digits", {"train": 30}, classes=3, size=20, colour=True)
    return root


def built_network(run_dir: Path) -> tuple[int, int]:
    """(input channels, classes) of the network the run trained: its first conv and classifier."""
    weights = torch.load(run_dir / "final_weights.pt")
    return weights["conv1.weight"].shape[1], weights["fc.weight"].shape[0]


def test_the_run_is_named_after_the_folder(trees):
    import bnn_lab.config_resolvers  # noqa: F401

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            config_name="config",
            return_hydra_config=True,
            overrides=["data=image_folder", f"data.root={trees / 'grey_digits'}/"],
        )
        imagenet = compose(config_name="config", overrides=["data=imagenet", "data.root=/data/ilsvrc"])
    assert cfg.data.name == "grey_digits" and cfg.data.module == "image_folder"
    assert str(cfg.hydra.run.dir).endswith("_resnet20_ste_grey_digits")
    assert (imagenet.data.name, imagenet.data.module, imagenet.data.img_size) == ("imagenet", "image_folder", 224)
    assert list(imagenet.data.mean) == [0.485, 0.456, 0.406]


@pytest.mark.parametrize(
    "tree, chans, classes, test_source",
    [
        ("grey_digits", 1, 6, "48 test (test/)"),
        ("colour_digits", 3, 3, "the validation images"),
    ],
)
def test_a_folder_trains_with_inferred_classes_and_channels(
    run_cli, trees, tmp_path, tree, chans, classes, test_source
):
    packed = tree == "grey_digits"  # this one also ends with the packed model, evaluated again below
    args = [a for a in FAST if not (packed and a.startswith("export.packed"))]
    env = {"BNN_LAB_CACHE": str(tmp_path)}
    proc = run_cli("data=image_folder", f"data.root={trees / tree}", *args, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert built_network(proc.run_dir) == (chans, classes)
    assert third_party_warnings(proc.stdout + proc.stderr) == []
    summary = (proc.run_dir / "summary.txt").read_text().splitlines()[0]
    assert f"data {tree}: " in summary and f"{chans}x" in summary and f"{classes} classes" in summary
    assert test_source in summary
    if tree == "colour_digits":
        assert "no test/ folder" in summary and "9 val (9 held out of train/)" in summary
    else:  # validation on val/, testing on test/: not the same images
        assert "48 val (val/)" in summary
    metrics = json.loads((proc.run_dir / "metrics.json").read_text())
    assert metrics["data"] == tree
    assert metrics["global_steps"] == ((classes * (40 if tree == "grey_digits" else 27) + 15) // 16)
    if packed:  # bnn-lab-eval finds the folder again from the run's own configuration
        evaluate = shutil.which("bnn-lab-eval", path=str(Path(sys.executable).parent))
        out = subprocess.run(
            [evaluate, f"path={proc.run_dir}", "--json"],
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, **env},
        )
        assert out.returncode == 0, out.stderr[-3000:]
        result = json.loads(out.stdout.strip().splitlines()[-1])
        assert result["data"] == tree and result["packed/test_acc"] == metrics["packed/test_acc"]


STEPS = 10  # 240 training images in batches of 24
RUN = [
    "data=image_folder",
    "logger=csv",
    "export.packed=false",
    "trainer.max_epochs=3",
    "data.batch_size=24",
    "checkpoint.every_n_train_steps=2",
]


@pytest.mark.parametrize("mode", ["in_memory", pytest.param("streamed", marks=pytest.mark.slow)])
def test_sigkill_mid_epoch_then_resume_is_bit_identical(trees, tmp_path, monkeypatch, mode):
    """Augmentation on (the default here), so a resume that lost the RNG states or the position
    in the epoch would end elsewhere. ``streamed``: from disk with 2 loader workers."""
    monkeypatch.setenv("BNN_LAB_CACHE", str(tmp_path / "cache"))
    args = RUN + [f"data.root={trees / 'grey_digits'}"]
    if mode == "streamed":
        args += ["data.in_memory=false", "data.num_workers=2"]
    reference = tmp_path / "reference"
    proc = bnn_lab(*args, f"hydra.run.dir={reference}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((reference / "metrics.json").read_text())["global_steps"] == 3 * STEPS

    run_dir = tmp_path / "killed"
    last = run_dir / "checkpoints" / "last.ckpt"
    kill_mid_epoch(run_dir, tmp_path, run=args, steps_per_epoch=STEPS)

    proc = bnn_lab(f"resume={run_dir}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"resuming stage train from {last}" in proc.stdout + proc.stderr
    assert_same_run(reference, run_dir)

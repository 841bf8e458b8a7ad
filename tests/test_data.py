"""Data modules yield the right shapes; missing or corrupt files fail with a clear message."""

import gzip

import pytest
import torch

from bnn_lab.data import build_datamodule, dataset_names
from bnn_lab.data import fashion_mnist as fm
from bnn_lab.errors import UserError


def first_batch(dm, split="train"):
    dm.setup("fit")
    loader = {"train": dm.train_dataloader, "val": dm.val_dataloader, "test": dm.test_dataloader}[split]()
    return next(iter(loader))


def test_registry_lists_every_dataset():
    assert set(dataset_names()) == {"fashion_mnist", "digits", "cifar10", "cifar100", "image_folder", "synthetic"}
    with pytest.raises(ValueError, match="valid datasets: cifar10, cifar100, digits"):
        build_datamodule("mnist")
    with pytest.raises(ValueError, match="batch_sise"):
        build_datamodule("digits", batch_sise=3)


def test_digits_shapes_and_splits():
    dm = build_datamodule("digits", batch_size=32, val_size=0.1)
    x, y = first_batch(dm)
    assert x.shape == (32, 1, 8, 8) and x.dtype == torch.float32
    assert y.dtype == torch.long and 0 <= y.min() and y.max() <= 9
    sizes = {k: len(v[1]) for k, v in dm.splits.items()}
    assert sizes["test"] == int(1797 * 0.2)
    assert sizes["train"] + sizes["val"] + sizes["test"] == 1797
    # normalised with training statistics
    assert abs(float(dm.splits["train"][0].mean())) < 1e-4


@pytest.mark.skipif(not fm.DEBIAN_DIR.is_dir(), reason="needs Debian's dataset-fashion-mnist (.ci/run installs it)")
def test_fashion_mnist_from_debian_package(tmp_path):
    dm = build_datamodule("fashion_mnist", root=str(tmp_path), download=False, batch_size=64, val_size=5000)
    x, y = first_batch(dm, "test")
    assert x.shape == (64, 1, 28, 28)
    assert {k: len(v[1]) for k, v in dm.splits.items()} == {"train": 55000, "val": 5000, "test": 10000}
    assert torch.bincount(dm.splits["test"][1]).tolist() == [1000] * 10


def test_missing_fashion_mnist_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "nowhere")
    dm = build_datamodule("fashion_mnist", root=str(tmp_path / "data"), download=False)
    with pytest.raises(UserError) as err:
        dm.setup("fit")
    msg = str(err.value)
    assert str(tmp_path / "data") in msg and "dataset-fashion-mnist" in msg and "data.download=true" in msg


def test_corrupt_idx_file_is_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "nowhere")
    header = (2051).to_bytes(4, "big") + (10).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    with gzip.open(tmp_path / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(header + bytes(100))  # truncated: 10 images need 7840 bytes
    labels = (2049).to_bytes(4, "big") + (10).to_bytes(4, "big") + bytes(10)
    with gzip.open(tmp_path / "train-labels-idx1-ubyte.gz", "wb") as f:
        f.write(labels)
    dm = build_datamodule("fashion_mnist", root=str(tmp_path), download=False)
    with pytest.raises(UserError, match="truncated or corrupt"):
        dm.setup("fit")


def test_synthetic_shapes_follow_config():
    dm = build_datamodule(
        "synthetic", in_chans=2, num_classes=7, img_size=12, n_train=64, n_test=16, batch_size=8, val_size=0.25
    )
    x, y = first_batch(dm)
    assert x.shape == (8, 2, 12, 12) and int(y.max()) < 7
    assert dm.input_shape == (2, 12, 12)


def test_batched_augmentation_keeps_shape_and_changes_pixels():
    from bnn_lab.data.base import random_crop_flip

    torch.manual_seed(0)
    x = torch.randn(16, 3, 32, 32)
    out = random_crop_flip(x, pad=4)
    assert out.shape == x.shape and not torch.equal(out, x)
    # every output image is a shifted / flipped copy: its values come from the image or the padding
    assert set(out[0].unique().tolist()) <= set(x[0].unique().tolist()) | {0.0}

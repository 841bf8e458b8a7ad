"""CIFAR-10/100 through torchvision, read from ``data.root``: generated files in the CIFAR
layout (pickled batches of 3072-byte rows, channel-major) load with the right pixels, channel
order, labels and splits."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest
import torchvision.datasets as tvd

from bnn_lab.data import build_datamodule
from bnn_lab.errors import UserError

LAYOUT = {  # option: (torchvision class, folder, training files, test file, meta file, label key, classes)
    "cifar10": (
        tvd.CIFAR10,
        "cifar-10-batches-py",
        [f"data_batch_{i}" for i in range(1, 6)],
        "test_batch",
        "batches.meta",
        "labels",
        10,
    ),
    "cifar100": (tvd.CIFAR100, "cifar-100-python", ["train"], "test", "meta", "fine_labels", 100),
}


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def write_cifar(root: Path, option: str, per_file: int, monkeypatch) -> dict[str, np.ndarray]:
    """Random images and labels in the CIFAR files; torchvision is told their checksums."""
    cls, folder, train_files, test_file, meta_file, label_key, classes = LAYOUT[option]
    rng = np.random.default_rng(0)
    (root / folder).mkdir(parents=True)
    written = {}
    for name in train_files + [test_file]:
        data = rng.integers(0, 256, (per_file, 3 * 32 * 32), dtype=np.uint8)
        labels = rng.integers(0, classes, per_file).tolist()
        with open(root / folder / name, "wb") as f:
            pickle.dump({"data": data, label_key: labels}, f)
        written[name] = (data.reshape(-1, 3, 32, 32), np.array(labels))
    meta_key = "label_names" if option == "cifar10" else "fine_label_names"
    with open(root / folder / meta_file, "wb") as f:
        pickle.dump({meta_key: [f"class{i}" for i in range(classes)]}, f)
    monkeypatch.setattr(cls, "train_list", [[n, md5(root / folder / n)] for n in train_files])
    monkeypatch.setattr(cls, "test_list", [[test_file, md5(root / folder / test_file)]])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5(root / folder / meta_file)})
    return written


@pytest.mark.parametrize("option", ["cifar10", "cifar100"])
def test_cifar_files_under_data_root(tmp_path, monkeypatch, option):
    written = write_cifar(tmp_path, option, per_file=20, monkeypatch=monkeypatch)
    _, _, train_files, test_file, *_, classes = LAYOUT[option]
    dm = build_datamodule(option, root=str(tmp_path), download=False, val_size=10, batch_size=16)
    dm.check()
    assert (dm.in_chans, dm.img_size, dm.num_classes) == (3, 32, classes)
    n_train = 20 * len(train_files)
    assert {k: len(v[1]) for k, v in dm.splits.items()} == {"train": n_train - 10, "val": 10, "test": 20}
    images, labels = written[test_file]
    x, y = dm.splits["test"]
    assert y.tolist() == labels.tolist()
    # channel-major rows become CHW images: undo the normalization and compare pixel by pixel
    mean, std = (t.numpy().astype(np.float64) for t in dm.normalized_by)
    restore = lambda split: dm.splits[split][0].numpy() * std + mean  # noqa: E731
    assert np.allclose(restore("test"), images / 255, atol=1e-5)
    # train and val are the training files' images, split; the statistics are the train split's
    rows = lambda a: sorted(map(bytes, np.round(a * 255).astype(np.uint8).reshape(len(a), -1)))  # noqa: E731
    raw = np.concatenate([written[n][0] for n in train_files])
    assert rows(np.concatenate([restore("train"), restore("val")])) == rows(raw / 255)
    assert np.allclose(mean.flatten(), restore("train").mean(axis=(0, 2, 3)), atol=1e-5)
    assert not np.allclose(mean.flatten(), restore("val").mean(axis=(0, 2, 3)), atol=1e-3)


def test_missing_files_without_download_name_data_root(tmp_path):
    dm = build_datamodule("cifar10", root=str(tmp_path / "empty"), download=False)
    with pytest.raises(UserError, match="CIFAR10 not found in .*empty.*set data.root"):
        dm.check()


def test_a_cifar_batch_that_would_run_code_is_refused(tmp_path, monkeypatch):
    """A batch whose checksum torchvision is told (a tampered copy with a matching list) still
    runs nothing: the batches are read as plain data."""
    from test_untrusted_files import Payload

    write_cifar(tmp_path, "cifar10", per_file=4, monkeypatch=monkeypatch)
    folder = tmp_path / "cifar-10-batches-py"
    marker = tmp_path / "PWNED"
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": np.zeros((4, 3072), np.uint8), "labels": Payload(f"touch {marker}")}, f)
    monkeypatch.setattr(tvd.CIFAR10, "test_list", [["test_batch", md5(folder / "test_batch")]])
    dm = build_datamodule("cifar10", root=str(tmp_path), download=False, val_size=2, batch_size=4)
    with pytest.raises(UserError, match=r"CIFAR10 file .*test_batch refused: it would call posix\.system"):
        dm.check()
    assert not marker.exists()

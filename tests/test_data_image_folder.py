"""data=image_folder on small PNG trees: what it infers, which images land in which split, the
cached statistics, the augmentation, and streamed batches that repeat after a restart."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from image_trees import write_tree
from PIL import Image

from bnn_lab.data import build_datamodule
from bnn_lab.data.stats_cache import cache_dir
from bnn_lab.errors import UserError


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BNN_LAB_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    root = tmp_path_factory.mktemp("trees")
    grey = write_tree(root / "grey", {"train": 30, "val": 6, "test": 5}, classes=4, size=16)
    colour = write_tree(root / "colour", {"train": 25}, classes=3, size=20, colour=True)
    return root, grey, colour


def folder(root: Path, **kw):
    dm = build_datamodule("image_folder", root=str(root), batch_size=8, **kw)
    dm.check()
    return dm


def paths(dm, split: str, root: Path) -> set[tuple[str, int]]:
    return {(str(Path(p).relative_to(root)), c) for p, c in dm.samples[split]}


def pixels(root: Path, files) -> np.ndarray:
    return np.stack([np.asarray(Image.open(root / f), dtype=np.float64) / 255 for f, _ in files])


def test_grey_tree_with_test_folder(trees):
    root, written, _ = trees
    dm = folder(root / "grey")
    assert (dm.num_classes, dm.in_chans, dm.img_size) == (4, 1, 16)
    assert dm.classes == ["digit0", "digit1", "digit2", "digit3"]
    for split in ("train", "val", "test"):  # each split is exactly its folder
        assert paths(dm, split, root / "grey") == set(written[split])
    assert not paths(dm, "val", root / "grey") & paths(dm, "test", root / "grey")
    assert not dm.test_is_val
    x_val, x_test = dm.splits["val"][0], dm.splits["test"][0]
    assert x_val.shape == (24, 1, 16, 16) and x_test.shape == (20, 1, 16, 16)
    # normalized with the training images' own mean and std, computed here from the files
    train = pixels(root / "grey", written["train"])
    assert dm.mean == pytest.approx([train.mean()], abs=1e-5) and dm.std == pytest.approx([train.std()], rel=1e-3)
    first = sorted(dm.samples["test"])[0]
    i = dm.samples["test"].index(first)
    expected = (np.asarray(Image.open(first[0]), dtype=np.float32) / 255 - dm.mean[0]) / dm.std[0]
    assert torch.allclose(x_test[i, 0], torch.from_numpy(expected), atol=1e-5)
    assert "test (test/)" in dm.describe()


def test_colour_tree_without_val_or_test(trees):
    root, _, written = trees
    dm = folder(root / "colour", val_size=0.2)
    assert (dm.num_classes, dm.in_chans, dm.img_size) == (3, 3, 20)
    train, val = paths(dm, "train", root / "colour"), paths(dm, "val", root / "colour")
    assert len(val) == 15 and not train & val and train | val == set(written["train"])
    assert dm.test_is_val and dm.splits["test"][0] is dm.splits["val"][0]
    assert "no test/ folder" in dm.describe()
    mean = pixels(root / "colour", sorted(train)).mean(axis=(0, 1, 2))
    assert dm.mean == pytest.approx(mean.tolist(), abs=1e-5)
    assert dm.mean[0] != pytest.approx(dm.mean[1], abs=1e-3)  # per channel: the tints differ


def test_the_split_does_not_depend_on_the_training_seed(trees):
    root, *_ = trees
    torch.manual_seed(1)
    a = folder(root / "colour").samples["val"]
    torch.manual_seed(2)
    assert folder(root / "colour").samples["val"] == a
    assert folder(root / "colour", seed=1).samples["val"] != a


def test_statistics_are_cached_and_given_ones_win(trees):
    root, *_ = trees
    dm = folder(root / "grey")
    files = list(cache_dir().glob("*.json"))
    assert len(files) == 1
    file = files[0]
    file.write_text(json.dumps({"mean": [0.25], "std": [0.5]}))  # the next run reads it, not the images
    assert folder(root / "grey").mean == [0.25]
    given = folder(root / "grey", mean=[0.1], std=[0.2])
    assert (given.mean, given.std) == ([0.1], [0.2])
    x = given.splits["train"][0]
    raw = dm.splits["train"][0] * dm.std[0] + dm.mean[0]
    assert torch.allclose(x, (raw - 0.1) / 0.2, atol=1e-5)


def test_channels_and_size_can_be_given(trees):
    root, *_ = trees
    dm = folder(root / "grey", in_chans=3, img_size=12)
    assert dm.splits["train"][0].shape[1:] == (3, 12, 12)


def test_mistakes_are_one_clear_error(tmp_path, trees):
    root, *_ = trees
    with pytest.raises(UserError, match="does not exist"):
        folder(tmp_path / "nowhere")
    (tmp_path / "flat").mkdir()
    with pytest.raises(UserError, match="has no train/ folder"):
        folder(tmp_path / "flat")
    with pytest.raises(UserError, match="has 4 class folders but data.num_classes=10"):
        folder(root / "grey", num_classes=10)
    bad = tmp_path / "bad"
    write_tree(bad, {"train": 3}, classes=2, size=8)
    (bad / "train" / "digit1" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="cannot read image .*broken.png"):
        folder(bad, val_size=1)
    (bad / "val" / "digit7").mkdir(parents=True)
    with pytest.raises(UserError, match="classes that train/ lacks: digit7"):
        folder(bad)


def test_large_images_get_random_resized_crops_and_flips(monkeypatch):
    from bnn_lab.data import augment

    torch.manual_seed(0)
    x = torch.rand(64, 3, 96, 96)
    out = augment.random_resized_crop_flip(x)
    assert out.shape == x.shape
    assert ((out - x).abs().flatten(1).amax(1) > 1e-3).all()
    # boxes of the whole image: each output is its image or its mirror image, both happen
    monkeypatch.setattr(augment, "SCALE", (1.0, 1.0))
    monkeypatch.setattr(augment, "RATIO", (1.0, 1.0))
    out = augment.random_resized_crop_flip(x)
    same = [torch.allclose(o, i, atol=1e-5) for o, i in zip(out, x)]
    mirrored = [torch.allclose(o, i.flip(-1), atol=1e-5) for o, i in zip(out, x)]
    assert all(a or b for a, b in zip(same, mirrored)) and 10 < sum(same) < 54


@pytest.mark.parametrize("workers", [0, 2])
def test_streamed_batches_repeat_after_a_restart_mid_epoch(trees, workers):
    """The streamed loader (data too large for memory): an epoch resumed at batch 2 yields the
    batches that the uninterrupted loader yielded there, augmentation included, with workers."""
    root, *_ = trees
    torch.manual_seed(7)
    dm = folder(root / "grey", in_memory=False, num_workers=workers)
    assert dm.streams and not dm.splits
    loader = dm.train_dataloader()
    epochs = [[b for b in loader] for _ in range(2)]
    assert len(epochs[0]) == 15  # 120 images in batches of 8
    assert not torch.equal(epochs[0][0][0], epochs[1][0][0])  # a new order (and new crops) per epoch
    restarted = folder(root / "grey", in_memory=False, num_workers=workers).train_dataloader()
    restarted.load_state_dict({**loader.state_dict(), "epoch": 1, "position": 2})
    again = list(restarted)
    assert len(again) == 13
    for (xa, ya), (xb, yb) in zip(again, epochs[1][2:]):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    # evaluation batches are the plain images, normalized like the in-memory ones
    memory = folder(root / "grey")
    xs = torch.cat([x for x, _ in dm.test_dataloader()])
    assert torch.allclose(xs, memory.splits["test"][0], atol=1e-3)  # std: population vs sample

"""Packed-model files damaged in every way a disk, a transfer or a hand edit can damage them:
each either loads to exactly the predictions of the file as written, or is refused with one
UserError. Never another exception, never a network that predicts something else."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from safetensors.torch import load_file, save_file

from bnn_lab.assembly import build_model
from bnn_lab.errors import UserError
from bnn_lab.export import load_packed, pack_model, save_packed
from bnn_lab.export.io import DIGEST, content_digest

REPO = Path(__file__).resolve().parents[1]
CASES = 240


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """(file, its metadata, a batch, the packed model's outputs on it) for a binary ResNet-20."""
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["data=digits"])
    torch.manual_seed(0)
    model, _ = build_model(cfg, 1, 10, 8, precision="1w1a")
    packed, _ = pack_model(model.eval())
    meta = {
        "arch": cfg.arch.name,
        "estimator": cfg.estimator.name,
        "precision": "1w1a",
        "in_chans": 1,
        "num_classes": 10,
        "img_size": 8,
        "config": OmegaConf.to_yaml(cfg, resolve=True),
    }
    path = save_packed(packed, tmp_path_factory.mktemp("packed") / "model.packed.safetensors", meta)
    x = torch.randn(32, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = packed(x)
    return path, x, expected


def header_length(data: bytes) -> int:
    return 8 + struct.unpack("<Q", data[:8])[0]


def resigned(path: Path, out: Path, tensors=None, metadata=None) -> None:
    """A well-formed file whose digest matches its content, but whose content disagrees with
    itself (metadata against tensors): only the consistency checks can catch it."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
    tensors = load_file(str(path)) if tensors is None else tensors
    meta.update(metadata or {})
    meta[DIGEST] = content_digest(tensors, meta)
    save_file(tensors, str(out), metadata=meta)


def mutate(kind: int, rng: random.Random, path: Path, out: Path) -> str:
    data = bytearray(path.read_bytes())
    head = header_length(bytes(data))
    if kind == 0:
        cut = rng.randrange(len(data))
        out.write_bytes(data[:cut])
        return f"truncated at {cut}"
    if kind in (1, 2, 3):
        lo, hi = {1: (0, len(data)), 2: (0, head), 3: (head, len(data))}[kind]
        spots = [rng.randrange(lo, hi) for _ in range(rng.randint(1, 4))]
        for i in spots:
            data[i] ^= rng.randrange(1, 256)
        out.write_bytes(data)
        return f"bytes flipped at {spots}"
    tensors = load_file(str(path))
    if kind == 4:
        key, value = rng.choice(
            [
                ("num_classes", "11"),
                ("in_chans", "3"),
                ("arch", "vgg_small"),
                ("precision", "fp"),
                ("img_size", "16"),
                ("num_classes", "0"),
                ("in_chans", "x"),
            ]
        )
        resigned(path, out, metadata={key: value})
        return f"metadata {key}={value}"
    name = rng.choice(sorted(tensors))
    t = tensors[name]
    change = rng.choice(["dtype", "shape", "missing", "extra"])
    if change == "dtype":
        tensors[name] = t.view(torch.float32) if t.dtype == torch.int32 else t.to(torch.float64)
    elif change == "shape":
        tensors[name] = t.reshape(-1)[:-1].clone() if t.numel() > 1 else torch.zeros(2, dtype=t.dtype)
    elif change == "missing":
        del tensors[name]
    else:
        tensors[name + "_extra"] = t.clone()
    resigned(path, out, tensors=tensors)
    return f"tensor {name}: {change}"


def test_every_damaged_packed_file_loads_to_the_same_predictions_or_is_refused(written, tmp_path):
    path, x, expected = written
    rng = random.Random(20261206)
    refused, same, loaded = {}, {}, []
    for case in range(CASES):
        kind = case % 6
        out = tmp_path / f"case{case}.safetensors"
        what = mutate(kind, rng, path, out)
        try:
            model, _ = load_packed(out)
        except UserError as exc:
            message = str(exc)
            assert "\n" not in message and str(out) in message, (what, message)
            refused[kind] = refused.get(kind, 0) + 1
            continue
        except Exception as exc:  # noqa: BLE001 - the point: nothing but the one-line error
            pytest.fail(f"case {case} ({what}): {type(exc).__name__}: {exc}")
        with torch.no_grad():
            assert torch.equal(model(x), expected), f"case {case} ({what}) loaded to other predictions"
        same[kind] = same.get(kind, 0) + 1
        loaded.append(what)
        out.unlink()
    assert sum(refused.values()) + sum(same.values()) == CASES >= 200
    # every truncation and every altered byte of the tensors is caught (the digest), and every
    # disagreement between re-signed metadata and tensors that changes the network
    assert refused.get(0, 0) == refused.get(3, 0) == CASES // 6
    assert refused.get(5, 0) == CASES // 6
    # what loads is only what does not change the network: the image size in re-signed metadata
    assert all(what == "metadata img_size=16" for what in loaded), loaded
    print(
        f"{CASES} damaged files: {sum(refused.values())} refused, {sum(same.values())} loaded to the same "
        f"predictions; refused by kind {dict(sorted(refused.items()))}"
    )


def test_the_file_as_written_loads_to_the_same_predictions(written):
    path, x, expected = written
    model, meta = load_packed(path)
    assert meta["format"] == "bnn-lab-packed/2" and len(meta[DIGEST]) == 64
    with torch.no_grad():
        assert torch.equal(model(x), expected)


def test_a_file_without_a_digest_is_still_checked_against_its_network(written, tmp_path):
    """Format-1 files (written before the digest) load, but a tensor of the wrong dtype is
    refused instead of being cast into other weights."""
    path, x, expected = written
    tensors = load_file(str(path))
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = {k: v for k, v in f.metadata().items() if k != DIGEST}
    meta["format"] = "bnn-lab-packed/1"
    old = tmp_path / "old.safetensors"
    save_file(tensors, str(old), metadata=meta)
    model, _ = load_packed(old)
    with torch.no_grad():
        assert torch.equal(model(x), expected)
    name = next(k for k, v in tensors.items() if v.dtype == torch.int32)
    tensors[name] = tensors[name].view(torch.float32)
    save_file(tensors, str(old), metadata=meta)
    with pytest.raises(UserError, match=f"{name} torch.float32"):
        load_packed(old)
    meta["format"] = "bnn-lab-packed/2"  # the current format without its digest: refused
    save_file(load_file(str(path)), str(old), metadata=meta)
    with pytest.raises(UserError, match="metadata lacks sha256"):
        load_packed(old)

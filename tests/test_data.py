"""Data: IDX parsing, offline discovery, ImageFolder splits, batch preprocessing."""
from __future__ import annotations

import gzip
import shutil
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from restnet.data import DataUnavailable, InputSpec, load_task, to_model_input
from restnet.data import fashion_mnist as fm


def _write_idx(path, arr: np.ndarray, gz: bool) -> None:
    payload = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape) + arr.tobytes()
    (gzip.open if gz else open)(path, "wb").write(payload)


def _fake_fmnist(root, n_train=50, n_test=20, gz=True):
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        imgs, labels = fm.FILES[split]
        ext = ".gz" if gz else ""
        _write_idx(root / (imgs + ext), rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), gz)
        _write_idx(root / (labels + ext), (np.arange(n) % 10).astype(np.uint8), gz)
    return root


@pytest.mark.parametrize("gz", [True, False])
def test_restnet_data_env_wins(tmp_path, monkeypatch, cache, gz):
    root = _fake_fmnist(tmp_path / "fm", gz=gz)
    monkeypatch.setenv("RESTNET_DATA", str(root))
    assert fm.find_fashion_mnist(download=False) == root
    task = load_task("fashion-mnist", train_size=30, val_size=10, seed=0)
    assert (len(task.train), len(task.val), task.num_classes) == (30, 10, 10)


def test_missing_data_says_how_to_get_it(tmp_path, monkeypatch, cache):
    monkeypatch.setenv("RESTNET_DATA", str(tmp_path / "nowhere"))
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "no-debian")
    with pytest.raises(DataUnavailable) as e:
        fm.find_fashion_mnist(download=True)  # the network guard makes the download fail
    msg = str(e.value)
    assert "apt-get install dataset-fashion-mnist" in msg and "RESTNET_DATA" in msg and str(tmp_path / "nowhere") in msg


def test_truncated_idx_is_rejected(tmp_path):
    p = tmp_path / "x-idx3-ubyte"
    _write_idx(p, np.zeros((4, 28, 28), np.uint8), gz=False)
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(ValueError, match="truncated"):
        fm._read_idx(p)


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="Debian's dataset-fashion-mnist needs apt-get")
def test_real_fashion_mnist_is_installed():
    """The set-up script installs the real data set; this is it, not a stand-in."""
    task = load_task("fashion-mnist")
    assert (len(task.train), len(task.val), len(task.test)) == (55000, 5000, 10000)
    assert task.train.images.shape == (55000, 28, 28) and task.train.images.dtype == np.uint8
    assert np.bincount(task.val.labels).tolist() == [500] * 10  # carved from train, stratified
    assert np.bincount(task.test.labels).tolist() == [1000] * 10
    assert task.classes[9] == "Ankle boot"


def test_subsets_are_seeded(tmp_path, monkeypatch, cache):
    monkeypatch.setenv("RESTNET_DATA", str(_fake_fmnist(tmp_path / "fm")))
    a = load_task("fashion-mnist", train_size=20, seed=1).train
    b = load_task("fashion-mnist", train_size=20, seed=1).train
    c = load_task("fashion-mnist", train_size=20, seed=2).train
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_grayscale_batches_become_normalised_rgb():
    spec = InputSpec(56, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bicubic")
    imgs = torch.zeros(4, 28, 28, dtype=torch.uint8)
    imgs[:, :, 14:] = 255
    x = to_model_input(imgs, spec)
    assert x.shape == (4, 3, 56, 56)
    assert torch.equal(x[:, 0], x[:, 2])
    assert x.min().item() == -1.0 and x.max().item() == 1.0
    with pytest.raises(TypeError):
        to_model_input(imgs.float(), spec)


def _image_folder(root, per_class=10):
    for c, colour in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (40 + i, 30), colour).save(root / c / f"{i}.png")
    return root


def test_image_folder_split_is_seeded_and_stratified(tmp_path):
    root = _image_folder(tmp_path / "pets")
    t1 = load_task(str(root), seed=0, resolution=32)
    t2 = load_task(str(root), seed=0, resolution=32)
    assert t1.classes == ["cat", "dog"]
    assert len(t1.val) == 4 and np.bincount(t1.val.labels).tolist() == [2, 2]
    assert t1.val.images == t2.val.images
    x, y = next(iter(t1.loader(t1.val, InputSpec(32, (0.5,) * 3, (0.5,) * 3), batch_size=4)))
    assert x.shape == (4, 3, 32, 32)
    red = x[y == 0][0]
    assert red[0].mean() > 0.9 and red[2].mean() < -0.9


def test_bad_data_names_are_explained(tmp_path):
    with pytest.raises(DataUnavailable, match="neither a built-in"):
        load_task(str(tmp_path / "missing"))
    (tmp_path / "one" / "only").mkdir(parents=True)
    with pytest.raises(DataUnavailable, match="at least 2 class"):
        load_task(str(tmp_path / "one"))

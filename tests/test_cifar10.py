"""CIFAR-10 loader on small fixtures (never the whole archive): checksums, sources, decoding, splits."""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from restnet.data import DataUnavailable, carve, cifar10, load_task


@pytest.fixture(autouse=True)
def _private_decoded_cache(monkeypatch):
    monkeypatch.delenv("RESTNET_DATA_CACHE", raising=False)  # these tests look into their own cache

COLOURS = np.array([[(37 * c) % 256, (91 * c) % 256, (155 * c) % 256] for c in range(10)], dtype=np.uint8)


def _jpg(colour) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), colour, np.uint8)).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def _jpg_archive(path, per_class=(3, 1)):
    """A miniature of the bundled archive's layout: one flat colour per class."""
    with tarfile.open(path, "w:xz") as tar:
        for split, n in zip(("train", "test"), per_class):
            for c, name in enumerate(cifar10.CLASSES):
                for k in range(n):
                    data = _jpg(COLOURS[c])
                    info = tarfile.TarInfo(f"cifar10/{split}/{name}/{k:04d}.jpg")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_jpeg_archive_decodes_in_label_order(tmp_path, cache):
    arch = tmp_path / "cifar10-jpg.tar.xz"
    sha = _jpg_archive(arch)
    splits = cifar10.load(arch, expected_sha256=sha, check_sizes=False)
    x, y = splits["train"]
    assert x.shape == (30, 3, 32, 32) and x.dtype == np.uint8
    assert y.tolist() == [c for c in range(10) for _ in range(3)]
    # each image is its class's colour (JPEG: within a few levels)
    assert np.abs(x.mean(axis=(2, 3)) - COLOURS[y]).max() < 4
    assert splits["test"][0].shape == (10, 3, 32, 32)
    # decoded once: the second load reads the cache, even with the archive gone
    cached = list((cache / "data" / "cifar10").glob("*.npz"))
    assert len(cached) == 1
    assert np.array_equal(cifar10.load(arch, expected_sha256=sha, check_sizes=False)["train"][0], x)


def test_wrong_checksum_is_refused(tmp_path, cache):
    arch = tmp_path / "cifar10-jpg.tar.xz"  # the bundled name, so the known sum applies
    _jpg_archive(arch)
    with pytest.raises(DataUnavailable, match="does not match the expected " + cifar10.KNOWN_SHA256[arch.name]):
        cifar10.load(arch)
    assert not list((cache / "data" / "cifar10").glob("*.npz")), "nothing decoded from a bad archive"


def test_corrupt_cache_entry_is_decoded_again(tmp_path, cache):
    arch = tmp_path / "cifar10-jpg.tar.xz"
    sha = _jpg_archive(arch)
    cifar10.load(arch, expected_sha256=sha, check_sizes=False)
    (entry,) = (cache / "data" / "cifar10").glob("*.npz")
    entry.write_bytes(b"half-written")
    x, _ = cifar10.load(arch, expected_sha256=sha, check_sizes=False)["train"]
    assert x.shape == (30, 3, 32, 32)


def test_missing_everywhere_names_every_place(tmp_path, monkeypatch, cache):
    monkeypatch.setenv("RESTNET_DATA", str(tmp_path / "nowhere"))
    monkeypatch.setattr(cifar10, "BUNDLED", tmp_path / "not-bundled" / cifar10.JPG_ARCHIVE)
    with pytest.raises(DataUnavailable) as e:
        cifar10.find_source(download=True)  # the test network guard makes the download fail
    msg = str(e.value)
    for place in cifar10.candidates():
        assert str(place) in msg
    assert "RESTNET_DATA" in msg and "failed" in msg


def test_restnet_data_points_at_a_copy(tmp_path, monkeypatch):
    (tmp_path / "d").mkdir()
    arch = tmp_path / "d" / cifar10.JPG_ARCHIVE
    arch.write_bytes(b"x")
    monkeypatch.setenv("RESTNET_DATA", str(tmp_path / "d"))
    assert cifar10.find_source(download=False) == arch


def _batches_dir(root, n=4):
    root.mkdir()
    rng = np.random.default_rng(0)
    names = [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]
    for name in names:
        d = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(range(n))}
        (root / name).write_bytes(pickle.dumps(d))
    return root


def test_official_python_batches(tmp_path, cache):
    root = _batches_dir(tmp_path / cifar10.PY_FOLDER)
    splits = cifar10.load(root, check_sizes=False)
    assert splits["train"][0].shape == (20, 3, 32, 32) and splits["test"][0].shape == (4, 3, 32, 32)
    raw = pickle.loads((root / "data_batch_1").read_bytes())[b"data"]
    assert np.array_equal(splits["train"][0][:4].reshape(4, -1), raw)


def test_a_batch_that_runs_code_is_refused(tmp_path, cache):
    root = _batches_dir(tmp_path / cifar10.PY_FOLDER)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    (root / "test_batch").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    with pytest.raises(DataUnavailable, match="refusing"):
        cifar10.load(root, check_sizes=False)


def test_full_size_is_enforced(tmp_path, cache):
    arch = tmp_path / "cifar10-jpg.tar.xz"
    sha = _jpg_archive(arch)
    with pytest.raises(DataUnavailable, match="30 train images, CIFAR-10 has 50000"):
        cifar10.load(arch, expected_sha256=sha)


def test_task_carves_val_from_train_and_reports_on_test(tmp_path, monkeypatch, cache):
    arch = tmp_path / "cifar10-jpg.tar.xz"
    sha = _jpg_archive(arch, per_class=(10, 2))
    monkeypatch.setattr(cifar10, "KNOWN_SHA256", {arch.name: sha})
    monkeypatch.setattr(cifar10, "SPLIT_SIZES", {"train": 100, "test": 20})
    monkeypatch.setenv("RESTNET_DATA", str(tmp_path))
    task = load_task("cifar10", train_size=50, val_size=20, seed=0)
    assert (len(task.train), len(task.val), len(task.test)) == (50, 20, 20)
    assert task.report is task.test and task.report_name == "test"
    assert np.bincount(task.val.labels, minlength=10).tolist() == [2] * 10  # stratified
    again = load_task("cifar10", train_size=50, val_size=20, seed=0)
    assert task.fingerprint() == again.fingerprint()
    # The training images train_size leaves out are kept apart (an int8 file's flag is also checked on
    # them): train and unused split the non-val training images between them, and train is the same subset.
    whole = load_task("cifar10", val_size=20, seed=0)
    assert whole.unused is None and whole.train.subset(50, 0).fingerprint() == task.train.fingerprint()

    def images(*splits):
        return Counter(s.images[i].tobytes() + bytes([s.labels[i]]) for s in splits for i in range(len(s)))

    assert len(task.unused) == 30 and images(task.train, task.unused) == images(whole.train)


def test_carve_is_disjoint_stratified_and_seeded():
    labels = np.repeat(np.arange(4), [10, 20, 30, 40])
    rest, val = carve(labels, 10, seed=3)
    assert len(set(rest) | set(val)) == 100 and not set(rest) & set(val)
    assert np.bincount(labels[val]).tolist() == [1, 2, 3, 4]
    assert np.array_equal(carve(labels, 10, seed=3)[1], val)
    assert not np.array_equal(carve(labels, 10, seed=4)[1], val)

"""Fashion-MNIST from local IDX files, found offline first.

Search order: ``$RESTNET_DATA`` (the folder with the four IDX files, or a
folder holding ``fashion-mnist/``), Debian's ``dataset-fashion-mnist``
(``/usr/share/datasets/fashion-mnist``), then restnet's cache. Only when none
has the files and the official mirror answers are they downloaded (into the
cache, atomically). Files may be gzipped or not.
"""
from __future__ import annotations

import gzip
import os
import struct
import tempfile
import urllib.request
from pathlib import Path

import numpy as np

from restnet.data.errors import DataUnavailable
from restnet.paths import cache_dir

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
MIRROR = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"


def _has_files(d: Path) -> bool:
    return all(any((d / (f + ext)).is_file() for ext in ("", ".gz")) for pair in FILES.values() for f in pair)


def candidate_dirs() -> list[Path]:
    dirs = []
    env = os.environ.get("RESTNET_DATA")
    if env:
        dirs += [Path(env), Path(env) / "fashion-mnist"]
    dirs.append(DEBIAN_DIR)
    dirs.append(cache_dir("data", "fashion-mnist"))
    return dirs


def _download(dest: Path, timeout: float = 10.0) -> None:
    for pair in FILES.values():
        for f in pair:
            target = dest / f"{f}.gz"
            if target.is_file():
                continue
            with urllib.request.urlopen(MIRROR + f"{f}.gz", timeout=timeout) as r:
                payload = r.read()
            fd, tmp = tempfile.mkstemp(dir=dest, suffix=".part")
            with os.fdopen(fd, "wb") as out:
                out.write(payload)
            os.replace(tmp, target)


def find_fashion_mnist(download: bool = True) -> Path:
    """The folder holding the IDX files; raises DataUnavailable with how to get them."""
    dirs = candidate_dirs()
    for d in dirs:
        if _has_files(d):
            return d
    err = "not attempted"
    if download:
        try:
            _download(dirs[-1])
            return dirs[-1]
        except OSError as e:
            err = f"{type(e).__name__}: {e}"
    raise DataUnavailable(
        "Fashion-MNIST not found. Looked in: " + ", ".join(str(d) for d in dirs)
        + f". Download from {MIRROR} failed ({err}). Get it with one of: "
        "`apt-get install dataset-fashion-mnist` (Debian/Ubuntu), "
        "or put the four *-idx?-ubyte(.gz) files in a folder and set RESTNET_DATA to it."
    )


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    shape = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    # bytearray: a writable buffer, so torch.from_numpy on an image does not warn (or alias read-only memory).
    data = np.frombuffer(bytearray(raw), dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: truncated ({data.size} bytes for shape {shape})")
    return data.reshape(shape)


def load_split(split: str, root: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 28, 28], labels int64 [N]) for ``train`` or ``test``."""
    root = root or find_fashion_mnist()
    imgs_name, labels_name = FILES[split]

    def pick(name: str) -> Path:
        for ext in ("", ".gz"):
            if (root / (name + ext)).is_file():
                return root / (name + ext)
        raise DataUnavailable(f"{root}: missing {name}(.gz)")

    images = _read_idx(pick(imgs_name))
    labels = _read_idx(pick(labels_name)).astype(np.int64)
    if len(images) != len(labels):
        raise ValueError(f"{root}: {len(images)} images but {len(labels)} labels in the {split} split")
    return images, labels

"""CIFAR-10, the paper's data, found offline first and decoded once.

Sources, in this order (the first that exists wins):

1. ``$RESTNET_DATA``: the file itself, or a folder holding
   ``cifar10-jpg.tar.xz``, the official ``cifar-10-python.tar.gz`` or its
   extracted ``cifar-10-batches-py/``;
2. the copy bundled with restnet (``data/cifar10-jpg.tar.xz`` in the source
   tree), so the main job runs on a machine with no network at all;
3. the official archive in restnet's cache, downloaded there only when
   online (``RESTNET_OFFLINE`` unset).

Archives are checked against their known sha256 before anything is read.
Each source is decoded once into ``<cache>/data/cifar10/<digest>.npz``
(uint8 ``[N, 3, 32, 32]`` + labels, 180 MB; ``$RESTNET_DATA_CACHE`` moves
it): one file read per run instead of 60,000 JPEG decodes per epoch.
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
import tempfile
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from restnet.data.errors import DataUnavailable
from restnet.paths import cache_dir
from toolkit.package import sha256_of

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
JPG_ARCHIVE = "cifar10-jpg.tar.xz"
PY_ARCHIVE = "cifar-10-python.tar.gz"
PY_FOLDER = "cifar-10-batches-py"
# Known archives: name -> sha256. The JPEG copy's origin is in data/README.md.
KNOWN_SHA256 = {
    JPG_ARCHIVE: "02c1c449af081d88518339da0b61ad3ca42f9f1c6d00390c1e3c470eb4b4e0c2",
    PY_ARCHIVE: "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
}
OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
BUNDLED = Path(__file__).resolve().parents[2] / "data" / JPG_ARCHIVE
DECODE_VERSION = "1"
SPLIT_SIZES = {"train": 50000, "test": 10000}


def candidates() -> list[Path]:
    """Every place looked, in order (the error message lists them all)."""
    out: list[Path] = []
    env = os.environ.get("RESTNET_DATA")
    if env:
        p = Path(env)
        out += [p] if p.is_file() else [p / JPG_ARCHIVE, p / PY_ARCHIVE, p / PY_FOLDER,
                                        p / "cifar10" / JPG_ARCHIVE]
    out.append(BUNDLED)
    out.append(cache_dir("data", "cifar10") / PY_ARCHIVE)
    return out


def find_source(download: bool | None = None) -> Path:
    """The first CIFAR-10 source that exists; raises DataUnavailable naming every place looked."""
    places = candidates()
    for p in places:
        if p.exists():
            return p
    if download is None:
        download = not os.environ.get("RESTNET_OFFLINE")
    err = "not attempted (RESTNET_OFFLINE is set)" if not download else ""
    if download:
        try:
            return _download(places[-1])
        except OSError as e:
            err = f"failed ({type(e).__name__}: {e})"
    raise DataUnavailable(
        "CIFAR-10 not found. Looked in: " + ", ".join(str(p) for p in places)
        + f". Download of {OFFICIAL_URL}: {err}. Fix: put {JPG_ARCHIVE} (bundled with restnet under data/), "
        f"{PY_ARCHIVE} or its extracted {PY_FOLDER}/ in a folder and set RESTNET_DATA to that folder.")


def _download(dest: Path, timeout: float = 20.0) -> Path:
    fd, tmp = tempfile.mkstemp(dir=dest.parent, suffix=".part")
    try:
        with urllib.request.urlopen(OFFICIAL_URL, timeout=timeout) as r, os.fdopen(fd, "wb") as out:
            while chunk := r.read(1 << 20):
                out.write(chunk)
        verify(Path(tmp), KNOWN_SHA256[PY_ARCHIVE], what=f"download of {OFFICIAL_URL}")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def verify(path: Path, expected: str, what: str | None = None) -> str:
    got = sha256_of(path)
    if got != expected:
        raise DataUnavailable(f"{what or path}: sha256 {got} does not match the expected {expected}; the file is "
                              "corrupt or not the CIFAR-10 archive restnet knows. Replace it with an intact copy.")
    return got


def decoded_dir() -> Path:
    """Where decoded arrays live: ``$RESTNET_DATA_CACHE`` (tests share one) or the restnet cache."""
    env = os.environ.get("RESTNET_DATA_CACHE")
    if env:
        Path(env).mkdir(parents=True, exist_ok=True)
        return Path(env)
    return cache_dir("data", "cifar10")


# ---- decoding ----
def _decode_jpg_archive(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``cifar10/{train,test}/<class>/*.jpg`` -> uint8 [N,3,32,32], labels (sorted by split, class, name)."""
    index = {c: i for i, c in enumerate(CLASSES)}
    found: dict[str, list[tuple[str, int, bytes]]] = {"train": [], "test": []}
    with tarfile.open(path, "r:*") as tar:
        for m in tar:
            parts = Path(m.name).parts
            if not m.isfile() or len(parts) < 4 or not parts[-1].lower().endswith(".jpg"):
                continue
            split, cls = parts[-3], parts[-2]
            if split not in found or cls not in index:
                continue
            found[split].append((m.name, index[cls], tar.extractfile(m).read()))
    out = {}
    with ThreadPoolExecutor() as pool:  # PIL releases the GIL while decoding
        for split, items in found.items():
            if not items:
                raise DataUnavailable(f"{path}: no cifar10/{split}/<class>/*.jpg images in the archive")
            items.sort(key=lambda t: (t[1], t[0]))
            images = np.stack(list(pool.map(lambda it: _decode_one(it[2], it[0], path), items)))
            out[split] = (images, np.array([it[1] for it in items], dtype=np.int64))
    return out


def _decode_one(payload: bytes, name: str, archive: Path) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(payload)) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except OSError as e:
        raise DataUnavailable(f"{archive}: {name} is not a readable image ({e})") from None
    if arr.shape != (32, 32, 3):
        raise DataUnavailable(f"{archive}: {name} is {arr.shape[1]}x{arr.shape[0]}, CIFAR-10 images are 32x32")
    return arr.transpose(2, 0, 1)


class _BatchUnpickler(pickle.Unpickler):
    """The official batches are pickles: allow only what they contain (dicts, lists, bytes, numpy arrays)."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing {module}.{name} in a CIFAR-10 batch (not plain data)")


def _read_batch(raw: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        d = _BatchUnpickler(io.BytesIO(raw), encoding="bytes").load()
        data, labels = np.asarray(d[b"data"], dtype=np.uint8), np.asarray(d[b"labels"], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as e:
        raise DataUnavailable(f"{name}: not a CIFAR-10 batch ({type(e).__name__}: {e})") from None
    if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
        raise DataUnavailable(f"{name}: not a CIFAR-10 batch (data {data.shape}, {len(labels)} labels)")
    return data.reshape(-1, 3, 32, 32), labels


def _decode_python(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    names = {"train": [f"data_batch_{k}" for k in range(1, 6)], "test": ["test_batch"]}
    raws: dict[str, bytes] = {}
    if path.is_dir():
        for n in sum(names.values(), []):
            f = path / n
            if not f.is_file():
                raise DataUnavailable(f"{path}: missing {n} (an extracted {PY_FOLDER}/ has data_batch_1..5 and "
                                      "test_batch)")
            raws[n] = f.read_bytes()
    else:
        with tarfile.open(path, "r:gz") as tar:
            for m in tar:
                if m.isfile() and Path(m.name).name in sum(names.values(), []):
                    raws[Path(m.name).name] = tar.extractfile(m).read()
    out = {}
    for split, batch_names in names.items():
        missing = [n for n in batch_names if n not in raws]
        if missing:
            raise DataUnavailable(f"{path}: missing {', '.join(missing)}")
        parts = [_read_batch(raws[n], f"{path}/{n}") for n in batch_names]
        out[split] = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    return out


def load(source: Path | None = None, expected_sha256: str | None = None,
         check_sizes: bool = True) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train": (images, labels), "test": (...)} from ``source`` (default: find_source()).

    An archive is checked against ``expected_sha256`` (default: the known sum
    for its name) before it is read; the decoded arrays are cached by that sum.
    ``check_sizes`` insists on the full set (50,000 + 10,000 images).
    """
    source = Path(source) if source is not None else find_source()
    if source.is_dir():
        digest = hashlib.sha256("".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}"
                                        for p in sorted(source.iterdir())).encode()).hexdigest()
    else:
        expected = expected_sha256 or KNOWN_SHA256.get(source.name)
        if expected is None:
            raise DataUnavailable(f"{source}: unknown CIFAR-10 file name; expected one of "
                                  f"{', '.join(KNOWN_SHA256)} or a {PY_FOLDER}/ folder")
        digest = verify(source, expected)
    cached = decoded_dir() / f"{digest[:24]}-v{DECODE_VERSION}.npz"
    if cached.is_file():
        try:
            with np.load(cached) as z:
                return {s: (z[f"{s}_x"], z[f"{s}_y"]) for s in ("train", "test")}
        except (OSError, ValueError, KeyError):
            cached.unlink(missing_ok=True)  # half-written or corrupt: decode again, never trust it
    is_jpg = source.is_file() and source.name.endswith((".tar.xz", ".txz")) and "python" not in source.name
    splits = _decode_jpg_archive(source) if is_jpg else _decode_python(source)
    for split, (x, y) in splits.items():
        if check_sizes and len(y) != SPLIT_SIZES[split]:
            raise DataUnavailable(f"{source}: {len(y)} {split} images, CIFAR-10 has {SPLIT_SIZES[split]}")
        if y.min() < 0 or y.max() >= len(CLASSES):
            raise DataUnavailable(f"{source}: labels outside 0..9 in the {split} split")
    fd, tmp = tempfile.mkstemp(dir=cached.parent, suffix=".npz.part")
    with os.fdopen(fd, "wb") as f:
        np.savez(f, **{f"{s}_{k}": a for s, (x, y) in splits.items() for k, a in (("x", x), ("y", y))})
    os.replace(tmp, cached)
    return splits

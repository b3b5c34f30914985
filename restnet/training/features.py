"""The frozen front's outputs on disk, written and read a batch at a time.

Stitch-only training (and stitch+back) runs the frozen front once per training
image and reuses its outputs every epoch. Holding them in memory made the
training stage's peak RSS grow with the data (+498 MB from 2,048 to 8,192
images at 64 px, benchmarks/train_memory.py), so they live in a plain ``.npy``
file instead: written batch
by batch, read back one shuffled batch at a time with ``os.pread`` (no mmap,
so no file page ever counts towards the process's RSS). Memory is one batch,
whatever the number of images. The labels are small and stay a ``.pt`` entry.

Both files are sealed like every cache entry (restnet.cache):
written atomically with a sha256 beside them and checked before use, so a
truncated or damaged feature file is recomputed, never trained on.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO

import numpy as np
import torch

from restnet import cache

_DTYPE = np.dtype("<f4")


def labels_path(path: Path) -> Path:
    return path.with_name(path.stem + ".labels.pt")


def write(path: Path, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], n: int) -> FeatureFile:
    """Stream ``n`` rows of front features into ``path`` (.npy, float32) and their labels beside it;
    returns the file for reading (its digest was just computed from what was written)."""
    labels: list[torch.Tensor] = []

    def stream(f: IO[bytes]) -> None:
        rows = 0
        for feats, y in batches:
            block = feats.detach().to(torch.float32).contiguous().numpy()
            if rows == 0:  # the header needs the row shape, known from the first batch
                np.lib.format.write_array_header_1_0(
                    f, {"descr": _DTYPE.str, "fortran_order": False, "shape": (n, *block.shape[1:])})
            f.write(block.astype(_DTYPE, copy=False).tobytes())
            labels.append(y.detach().cpu())
            rows += len(block)
        if rows != n:
            raise RuntimeError(f"front features: expected {n} rows, the data gave {rows}")

    cache.seal(path, stream)
    all_labels = torch.cat(labels)
    cache.atomic_save(all_labels, labels_path(path))
    return FeatureFile(path, all_labels)


class FeatureFile:
    """Random access to the rows of a feature file written by ``write`` (after its checksum was
    verified by ``open_cached``)."""

    def __init__(self, path: Path, labels: torch.Tensor):
        self.path, self.labels = path, labels
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(f)
            self.offset = f.tell()
        if fortran or dtype != _DTYPE or len(shape) < 1 or shape[0] != len(labels):
            raise ValueError(f"{path}: not a restnet feature file ({shape}, {dtype}, {len(labels)} labels)")
        self.row_shape = tuple(shape[1:])
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * _DTYPE.itemsize
        self.fd = os.open(path, os.O_RDONLY)

    def __len__(self) -> int:
        return len(self.labels)

    def rows(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The features and labels of rows ``idx``, in that order (one pread per row)."""
        out = np.empty((len(idx), *self.row_shape), dtype=_DTYPE)
        flat = out.reshape(len(idx), -1).view(np.uint8)
        for k, i in enumerate(idx.tolist()):
            got = os.preadv(self.fd, [flat[k]], self.offset + i * self.row_bytes)
            if got != self.row_bytes:
                raise OSError(f"{self.path}: short read at row {i} (the file changed while training)")
        return torch.from_numpy(out), self.labels[idx]

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __del__(self) -> None:
        self.close()


def open_cached(path: Path) -> FeatureFile | None:
    """The feature file at ``path`` if it and its labels are intact, else None (damaged ones are
    discarded so the caller recomputes them)."""
    labels = cache.cached(labels_path(path))
    if labels is None or not cache.intact(path):
        return None
    try:
        return FeatureFile(path, labels)
    except (ValueError, OSError) as err:
        cache.discard(path, f"cannot be read ({err})")
        return None

"""Weights-only, checksummed cache entries, and the keys they are filed under.

Everything restnet saves is tensors plus plain Python values, so it loads
with ``torch.load(weights_only=True)``. An entry is written atomically
(``restnet.atomic``) and its sha256 goes beside it (``<name>.sha256``). A
read (``cached``) trusts an entry only when a digest matches: a truncated,
half-written, bit-flipped or digest-less entry is deleted and reported, and
the stage recomputes it.

Replacing an entry (a training checkpoint, every epoch) is two renames, the
entry's and its digest's, and a kill can fall between them. So the digest
file first lists the new digest *and* the old one, then the entry is
renamed, then the digest file is cut to the new digest alone: at every
instant the entry on disk matches a listed digest, and a killed job resumes
from its last checkpoint instead of discarding it.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

from restnet import atomic


def _digest_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _sha256(path: str | Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _digests(path: Path) -> list[str]:
    """The digests an entry may match: one, or more while the entry is being replaced."""
    return _digest_path(path).read_text().split()


def seal(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Replace the entry so that a kill at any point leaves the old or the new entry readable (module doc)."""
    tmp = atomic.write_temp(path, write)
    try:
        digest = _sha256(tmp)
        try:
            old = _digests(path) if path.is_file() else []  # all: an earlier kill may have left two
        except FileNotFoundError:
            old = []
        digests = _digest_path(path)
        atomic.replace(digests, lambda f: f.write(" ".join([digest, *old]).encode()))
        os.replace(tmp, path)
        if old:
            atomic.replace(digests, lambda f: f.write(digest.encode()))
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    atomic.sweep(path)
    atomic.sweep(digests)


def atomic_save(obj: Any, path: Path) -> None:
    seal(path, lambda f: torch.save(obj, f))


def atomic_write_json(obj: Any, path: Path) -> None:
    seal(path, lambda f: f.write(json.dumps(obj, indent=2, sort_keys=True).encode()))


def load(path: Path) -> Any:
    return torch.load(path, map_location="cpu", weights_only=True)


def remove(path: Path) -> None:
    """Drop an entry that has served its purpose (a finished run's resume point) with its digest."""
    for p in (path, _digest_path(path)):
        p.unlink(missing_ok=True)


def discard(path: Path, why: str) -> None:
    """Drop a damaged entry (and its digest), saying so: the caller recomputes it."""
    print(f"restnet: cache entry {path} {why}; recomputing it", file=sys.stderr)
    for p in (path, _digest_path(path)):
        p.unlink(missing_ok=True)


def intact(path: Path) -> bool:
    """Whether the entry at ``path`` exists and matches the digest written with it; a damaged or
    digest-less entry is discarded (reported) so the caller recomputes it."""
    if not path.is_file():
        return False
    try:
        expected = _digests(path)
        got = _sha256(path)
    except FileNotFoundError:
        discard(path, "has no checksum (written by an older restnet, or its write was interrupted)")
        return False
    if got not in expected:
        discard(path, "is damaged (its sha256 does not match the checksum written with it)")
        return False
    return True


def cached(path: Path) -> Any | None:
    """The entry at ``path`` (a .pt checkpoint or JSON) if it exists and is intact, else None."""
    if not intact(path):
        return None
    return load(path) if path.suffix == ".pt" else json.loads(path.read_text())


def key_of(**parts: Any) -> str:
    """A short stable hash of the inputs that determine a cached result."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def state_digest(module: torch.nn.Module) -> str:
    """sha256 (16 hex) of a module's parameters and buffers: the identity of trained weights."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()[:16]

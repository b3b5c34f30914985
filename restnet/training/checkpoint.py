"""Atomic, weights-only, checksummed cache entries.

Everything restnet saves is tensors plus plain Python values, so it loads
with ``torch.load(weights_only=True)``. A write goes to a temporary file in
the same folder, is flushed to disk and renamed, and then its sha256 is
written beside it (``<name>.sha256``). A read (``cached``) trusts an entry
only when the digest matches: a truncated, half-written, bit-flipped or
digest-less entry is deleted and reported, and the stage recomputes it.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch


def _digest_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _write_atomic(path: Path, write: Callable[[IO[bytes]], None]) -> str:
    """Write ``path`` through a flushed temporary file and a rename; returns the content's sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        with open(tmp, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return digest


def seal(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """The entry first, its digest last: an entry whose digest is missing or stale is never trusted."""
    digest = _write_atomic(path, write)
    _write_atomic(_digest_path(path), lambda f: f.write(digest.encode()))


def atomic_save(obj: Any, path: Path) -> None:
    seal(path, lambda f: torch.save(obj, f))


def atomic_write_json(obj: Any, path: Path) -> None:
    seal(path, lambda f: f.write(json.dumps(obj, indent=2, sort_keys=True).encode()))


def load(path: Path) -> Any:
    return torch.load(path, map_location="cpu", weights_only=True)


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
        expected = _digest_path(path).read_text().strip()
        with open(path, "rb") as f:
            got = hashlib.file_digest(f, "sha256").hexdigest()
    except FileNotFoundError:
        discard(path, "has no checksum (written by an older restnet, or its write was interrupted)")
        return False
    if got != expected:
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

"""Atomic, weights-only, checksummed cache entries.

Everything restnet saves is tensors plus plain Python values, so it loads
with ``torch.load(weights_only=True)``. A write goes to a temporary file in
the same folder and is flushed to disk; its sha256 goes beside it
(``<name>.sha256``). A read (``cached``) trusts an entry only when a digest
matches: a truncated, half-written, bit-flipped or digest-less entry is
deleted and reported, and the stage recomputes it.

Replacing an entry (a training checkpoint, every epoch) is two renames, the
entry's and its digest's, and a kill can fall between them. So the digest
file first lists the new digest *and* the old one, then the entry is
renamed, then the digest file is cut to the new digest alone: at every
instant the entry on disk matches a listed digest, and a killed job resumes
from its last checkpoint instead of discarding it.
"""
from __future__ import annotations

import glob
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


def _write_temp(path: Path, write: Callable[[IO[bytes]], None]) -> tuple[str, str]:
    """Write a flushed temporary file beside ``path``; returns (its name, its content's sha256)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        with open(tmp, "rb") as f:
            return tmp, hashlib.file_digest(f, "sha256").hexdigest()
    except BaseException:
        os.unlink(tmp)
        raise


def _write_atomic(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    tmp, _ = _write_temp(path, write)
    try:
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _digests(path: Path) -> list[str]:
    """The digests an entry may match: one, or more while the entry is being replaced."""
    return _digest_path(path).read_text().split()


def seal(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Replace the entry so that a kill at any point leaves the old or the new entry readable (module doc)."""
    tmp, digest = _write_temp(path, write)
    try:
        try:
            old = _digests(path) if path.is_file() else []  # all: an earlier kill may have left two
        except FileNotFoundError:
            old = []
        digests = _digest_path(path)
        _write_atomic(digests, lambda f: f.write(" ".join([digest, *old]).encode()))
        os.replace(tmp, path)
        if old:
            _write_atomic(digests, lambda f: f.write(digest.encode()))
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    _sweep(path)
    _sweep(digests)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _sweep(path: Path) -> None:
    """Delete this entry's temporary files left by writers that were killed (their pid is gone); a live
    writer's are kept, since a shared cache may have two processes writing the same entry."""
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = stale.name[len(path.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            stale.unlink(missing_ok=True)


def atomic_save(obj: Any, path: Path) -> None:
    seal(path, lambda f: torch.save(obj, f))


def atomic_write_bytes(data: bytes, path: Path) -> None:
    """An output file for users, not a cache entry: replaced atomically, with no digest beside it."""
    _write_atomic(path, lambda f: f.write(data))


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
        with open(path, "rb") as f:
            got = hashlib.file_digest(f, "sha256").hexdigest()
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

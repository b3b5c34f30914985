"""Replace a file so that a reader, or a kill at any instant, finds its old content or its new, never part.

The new content goes to a temporary file in the same folder (``.<name>.<pid>.<random>.tmp``, or
``private_temp``'s name for writers that name their file themselves), is flushed to disk, then renamed
over the file. A writer killed before its rename leaves its temporary
file behind; ``sweep`` deletes those whose writer is gone. Cache entries (``restnet.cache``) are built
on these steps and add a checksum.
"""
from __future__ import annotations

import glob
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


def write_temp(path: Path, write: Callable[[IO[bytes]], None]) -> str:
    """Write a flushed temporary file beside ``path``; returns its name (the caller renames or deletes it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        return tmp
    except BaseException:
        os.unlink(tmp)
        raise


def replace(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Replace ``path`` with what ``write`` writes, in one rename."""
    tmp = write_temp(path, write)
    try:
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_bytes(data: bytes, path: Path) -> None:
    """An output file for users, not a cache entry: replaced atomically, with no digest beside it."""
    replace(path, lambda f: f.write(data))


def private_temp(path: Path, suffix: str) -> Path:
    """``.<name>.<pid>.tmp<suffix>`` beside ``path``: a temporary file only this process writes, for writers
    that must name the file themselves (exporters pick the format by the name's ending, hence ``suffix``
    last). Two processes filling one shared cache slot at once never write the same file. Those of writers
    that are gone are swept first."""
    sweep(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp{suffix}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def sweep(path: Path) -> None:
    """Delete the temporary files of ``path`` left by writers that were killed (their pid is gone); a live
    writer's are kept, since a shared cache may have two processes writing the same entry."""
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp*"):  # write_temp's and private_temp's
        pid = stale.name[len(path.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            stale.unlink(missing_ok=True)

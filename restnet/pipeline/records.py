"""A stage's JSON record: read from the cache, or computed and written once."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from restnet import cache, distributed


def cached_json(path: Path, compute: Callable[[], dict]) -> dict:
    """The record at ``path`` if it is intact, else ``compute()``'s. Under torchrun every rank computes
    (every rank needs the result) and only the main rank writes, so no two processes write one file."""
    if (hit := cache.cached(path)) is not None:
        return hit
    record = compute()
    if distributed.is_main():
        cache.atomic_write_json(record, path)
    distributed.barrier()
    return record

"""What several test modules share: the tiny experiment and a cache for module-scoped fixtures.

Imported as ``from helpers import ...`` (pytest puts tests/ on sys.path); conftest.py keeps only
fixtures and guards, which pytest loads by itself.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

# Real timm architectures with random weights on a slice of the real data: minutes become seconds, and
# every stage (adapt, CKA, select, train, export, verify) still runs for real. Every verb takes these.
TINY = ["--no-pretrained", "--adapt", "probe", "--train-size", "128", "--val-size", "48", "--test-size", "48",
        "--cka-batch", "16", "--cka-repeats", "2", "--resolution", "32"]
# restnet-pack (and train/evaluate) with one stitch-training epoch instead of three.
TINY_PACK = [*TINY, "--epochs", "1"]


@contextlib.contextmanager
def restnet_cache(path: Path) -> Iterator[Path]:
    """RESTNET_CACHE set to ``path`` for a module-scoped fixture (monkeypatch is function-scoped)."""
    old = os.environ.get("RESTNET_CACHE")
    os.environ["RESTNET_CACHE"] = str(path)
    try:
        yield path
    finally:
        if old is None:
            os.environ.pop("RESTNET_CACHE")
        else:
            os.environ["RESTNET_CACHE"] = old

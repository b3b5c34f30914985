"""Where restnet keeps caches (weights stats, CKA matrices, features, checkpoints)."""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """``$RESTNET_CACHE`` or ``$XDG_CACHE_HOME/restnet`` or ``~/.cache/restnet``, created."""
    base = os.environ.get("RESTNET_CACHE")
    if base:
        root = Path(base)
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "restnet"
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path

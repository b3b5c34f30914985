"""Progress bars for long loops: shown on a terminal, silent in logs and pipes."""
from __future__ import annotations

from collections.abc import Iterable

from tqdm.auto import tqdm


def bar(iterable: Iterable, desc: str, total: int | None = None) -> Iterable:
    return tqdm(iterable, desc=desc, total=total, leave=False, disable=None, dynamic_ncols=True)

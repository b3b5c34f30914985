"""Progress bars for long loops: shown on a terminal, silent in logs and pipes."""
from __future__ import annotations

from collections.abc import Iterable

from tqdm.auto import tqdm

from restnet.distributed import env_rank


def bar(iterable: Iterable, desc: str, total: int | None = None) -> Iterable:
    """Under torchrun only rank 0 draws bars (N identical bars would fight over one terminal)."""
    return tqdm(iterable, desc=desc, total=total, leave=False, disable=None if env_rank() == 0 else True,
                dynamic_ncols=True)

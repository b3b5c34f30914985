"""Progress bars for long loops: shown on a terminal, silent in logs and pipes.

Every long loop of a pack goes through :func:`bar`, which makes it the one place to slow them all:
``RESTNET_TEST_STEP_DELAY`` (seconds, default 0) sleeps after each step. It exists for the
interruption tests only: on a fast machine a tiny pack's stages end before a signal sent on the
stage's first log line lands, and a test that sometimes signals the next stage proves nothing.
The work done and its results are unchanged, only stretched in time.
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator

from tqdm.auto import tqdm

from restnet.distributed import env_rank

STEP_DELAY_ENV = "RESTNET_TEST_STEP_DELAY"


def bar(iterable: Iterable, desc: str, total: int | None = None) -> Iterable:
    """Under torchrun only rank 0 draws bars (N identical bars would fight over one terminal)."""
    shown = tqdm(iterable, desc=desc, total=total, leave=False, disable=None if env_rank() == 0 else True,
                 dynamic_ncols=True)
    delay = _step_delay()
    return _slowed(shown, delay) if delay > 0 else shown


def _step_delay() -> float:
    raw = os.environ.get(STEP_DELAY_ENV, "")
    try:
        return max(0.0, float(raw)) if raw else 0.0
    except ValueError:
        raise ValueError(f"{STEP_DELAY_ENV}={raw!r}: expected seconds per step (a number >= 0)") from None


def _slowed(items: Iterable, delay: float) -> Iterator:
    for item in items:
        yield item
        time.sleep(delay)

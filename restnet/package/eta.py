"""The pack's stages by name, and an upper bound on the time left (the slowest time seen per stage).

A cold pack takes minutes and a warm one seconds; saying which stage runs and how long the rest
took at worst before lets a user tell a slow stage from a stuck one.
"""
from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator

from restnet import cache
from restnet.paths import cache_dir

STAGES = ("check budgets", "adapt anchors", "CKA", "select", "train stitches", "control", "evaluate",
          "export + verify", "write package")
# First-run guesses for the ETA (seconds, default pair, this 2-core machine); later runs use the last run's.
FIRST_RUN_SECONDS = {"check budgets": 5, "adapt anchors": 270, "CKA": 20, "select": 2, "train stitches": 240,
                     "control": 150, "evaluate": 90, "export + verify": 150, "write package": 10}


class StageClock:
    """Says which stage runs and how long is left at most (the slowest time seen per stage)."""

    def __init__(self, log: Callable[[str], None], names: tuple[str, ...] = STAGES):
        self.log, self.names = log, list(names)
        self.path = cache_dir() / "pack-stage-seconds.json"
        try:
            self.expected = {**FIRST_RUN_SECONDS, **json.loads(self.path.read_text())}
        except (OSError, ValueError):
            self.expected = dict(FIRST_RUN_SECONDS)
        self.took: dict[str, float] = {}
        self.t0 = time.perf_counter()

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        k = self.names.index(name)
        left = sum(self.expected.get(n, 0) for n in self.names[k:])
        self.log(f"[{k + 1}/{len(self.names)}] {name} (elapsed {self._fmt(time.perf_counter() - self.t0)}; "
                 f"at most ~{self._fmt(left)} left, by the slowest runs so far; far less when cached)")
        t = time.perf_counter()
        yield
        self.took[name] = time.perf_counter() - t

    def save(self) -> None:
        """Keep the slowest time seen per stage: the ETA is an upper bound, cold or warm."""
        slowest = {n: max(self.expected.get(n, 0), self.took.get(n, 0)) for n in {*self.expected, *self.took}}
        cache.atomic_write_json(slowest, self.path)

    @staticmethod
    def _fmt(s: float) -> str:
        return f"{s / 60:.1f} min" if s >= 90 else f"{s:.0f} s"

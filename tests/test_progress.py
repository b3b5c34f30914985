"""The step-delay hook the interruption tests rely on: it must stretch a loop, and refuse nonsense."""
from __future__ import annotations

import time

import pytest

from restnet.progress import STEP_DELAY_ENV, bar


def test_the_step_delay_stretches_every_loop_and_keeps_its_items(monkeypatch):
    monkeypatch.setenv(STEP_DELAY_ENV, "0.05")
    t = time.perf_counter()
    assert list(bar(range(6), desc="slowed")) == list(range(6))
    assert time.perf_counter() - t >= 6 * 0.05


def test_without_the_hook_a_loop_is_not_slowed(monkeypatch):
    monkeypatch.delenv(STEP_DELAY_ENV, raising=False)
    t = time.perf_counter()
    assert list(bar(range(200), desc="plain")) == list(range(200))
    assert time.perf_counter() - t < 200 * 0.05


def test_a_bad_step_delay_says_which_variable_and_what_is_allowed(monkeypatch):
    monkeypatch.setenv(STEP_DELAY_ENV, "fast")
    with pytest.raises(ValueError, match=f"{STEP_DELAY_ENV}='fast': expected seconds per step"):
        bar(range(3), desc="bad")

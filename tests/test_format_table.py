"""The export formats' table (restnet.export.FORMATS) is the one statement of what a format is.

The cache keys its facts feed must not move: a changed key makes every pack export every file again.
"""
from __future__ import annotations

import pytest

from restnet.export import ClassifierInfo
from restnet.package import exports

# Two exports' keys under the fake versions below. Another key means every cached export is made again:
# change these only on purpose.
PINNED_KEYS = {
    "pte": "158c32d4f4fdf571",
    "tflite": "b7845aabb952bdac",
}


@pytest.fixture
def fake_versions(monkeypatch):
    """Every package at a fixed made-up version, so that a key depends on the code alone."""
    monkeypatch.setattr(exports, "version", lambda package: f"{package} 0.0")
    monkeypatch.setattr(exports, "__version__", "0.0")


def test_the_export_cache_key_is_pinned(fake_versions):
    info = ClassifierInfo.of("v", "a test", ["a", "b"], 1 / 255, [0.5] * 3, [0.5] * 3)
    got = {"pte": exports.export_key("w" * 16, "pte", (1, 3, 64, 64), "c" * 16, 1),
           "tflite": exports.export_key("w" * 16, "tflite", (1, 3, 64, 64), "c" * 16, 1, info)}
    assert got == PINNED_KEYS

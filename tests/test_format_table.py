"""The export formats' table (restnet.export.FORMATS) is the one statement of what a format is.

Every other listing of formats in restnet is read from it, the toolkit's one copy is held equal to it
here, and the cache keys its facts feed do not move (a changed key makes every pack export every file
again).
"""
from __future__ import annotations

import pytest

from restnet.export import FORMATS, ClassifierInfo, backends, names, tool_packages
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


def _enum(model, field: str) -> list[str]:
    return model.model_json_schema()["properties"][field]["enum"]


def test_every_listing_of_formats_is_read_from_the_table():
    from restnet import profiles
    from restnet.export.int8 import routes
    from restnet.package import firmware, manifest, request

    assert _enum(manifest.FileEntry, "format") == list(names())
    assert _enum(manifest.SharedFile, "format") == [n for n, f in FORMATS.items() if f.export_many]
    assert _enum(manifest.ProfileInfo, "backend") == _enum(profiles.Profile, "backend") == list(backends())
    assert request.BACKEND_FORMAT == backends() == {b: n for n, f in FORMATS.items() for b in f.backends}
    assert firmware.LOADERS == {n: f.readme for n, f in FORMATS.items()}
    assert firmware.SHARED == {n: f.readme_shared for n, f in FORMATS.items() if f.export_many}
    assert routes() == {n: f.int8 for n, f in FORMATS.items() if f.int8}
    assert set(tool_packages()) == {"torch", *(t for f in FORMATS.values() for t in f.tools)}


def test_the_toolkit_copy_of_the_device_runtimes_is_the_table():
    """The toolkit cannot import restnet, so it keeps its own list of which runtime opens which format on
    a device; it must say what the formats say (``Format.device``), in the same order (its error
    messages list them)."""
    from toolkit import runtime

    stated = [(n, f.device) for n, f in FORMATS.items() if f.device is not None]
    assert list(runtime.DEVICE_RUNTIMES.items()) == stated
    assert set(runtime.DEVICE_RUNTIMES.values()) <= set(runtime.OPENERS)

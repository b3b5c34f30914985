"""The export formats' table (restnet.export.FORMATS) is the one statement of what a format is.

Every other listing of formats in restnet is read from it, the toolkit's one copy is held equal to it
here, the cache keys its facts feed do not move (a changed key makes every pack export every file
again), and a new format is its module and its row: ``test_a_new_format_is_its_module_and_its_row``
is the worked example docs/architecture.md ("Add an export format") points to.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from restnet.export import FORMATS, ClassifierInfo, backends, names, tool_packages
from restnet.package import exports

ROOT = Path(__file__).resolve().parents[1]

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


# A format registered the way restnet/export/__init__.py registers one (a row in FORMATS), then every
# module that lists formats imported as a pack imports it; none of them is edited for it.
_TOY = r'''
import json, sys
from pathlib import Path

import restnet.export as ex
from restnet.export import Format


def export(model, example, path):
    raise NotImplementedError("a toy: registered, never exported")


def load(path, threads=None, method=None):
    raise NotImplementedError("a toy: registered, never loaded")


TOY = Format("toy", ".toy", "toy runtime", export, load, lambda: "toy 1.0", tools=("numpy",),
             readme="**Toy (`.toy`).** Not a real format.", backends=("toy-npu",))
ex.FORMATS[TOY.name] = TOY  # the row

from restnet import profiles
from restnet.commands import pack
from restnet.package import firmware, manifest


def enum(model, field):
    return model.model_json_schema()["properties"][field]["enum"]


profile = Path(sys.argv[1])
profile.write_text((profiles.PROFILE_DIR / "rpi4.yaml").read_text()
                   .replace("backend: executorch-xnnpack", "backend: toy-npu"))
req = pack.make_request(str(profile), profile.parent / "out", ("onnx",))
option = next(p for p in pack.pack_command(None, None).params if p.name == "extra_formats")
print(json.dumps({"files": enum(manifest.FileEntry, "format"), "shared": enum(manifest.SharedFile, "format"),
                  "manifest backends": enum(manifest.ProfileInfo, "backend"),
                  "profile backends": enum(profiles.Profile, "backend"), "pack formats": list(req.formats),
                  "--format help": option.help, "readme": firmware.LOADERS["toy"],
                  "tools": list(ex.tool_packages())}))
'''


def test_a_new_format_is_its_module_and_its_row(tmp_path):
    """A toy format, one row in the table: the manifest's types, the profile backends, ``--format`` and the
    README pick it up. Its own process, because the manifest's and profiles' types are made on import."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-c", _TOY, str(tmp_path / "toy.yaml")], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout.splitlines()[-1])
    assert got["files"] == [*names(), "toy"]
    assert got["shared"] == list(names(lambda f: f.export_many))  # the toy cannot hold a family in one file
    assert got["manifest backends"] == got["profile backends"] == [*backends(), "toy-npu"]
    assert got["pack formats"] == ["toy", "onnx"]  # the profile's backend selects it, --format onnx adds onnx
    assert got["--format help"].endswith(f"{', '.join(names())}, toy.")
    assert got["readme"] == "**Toy (`.toy`).** Not a real format."
    assert got["tools"] == [*tool_packages(), "numpy"]  # so numpy's version is now in every export's key

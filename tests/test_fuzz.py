"""Fuzzing (hypothesis, bounded): every reader of user-made files returns a result or raises the
project's own error type for that input, never anything else (no KeyError, TypeError, RecursionError...).

Inputs: arbitrary bytes, arbitrary text, and valid files with one field replaced, removed or added.
Examples are capped so that the whole file runs in well under a minute; in CI (CI set) the examples are
derandomized, so a failure there reproduces.
"""
from __future__ import annotations

import copy
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from helpers import small_package
from hypothesis.extra import numpy as hnp

from restnet.package.latency import LatencyTable, LatencyTableError
from restnet.profiles import Profile, ProfileError, load_profile
from toolkit.package import PackageError, check_files, read_manifest
from toolkit.preprocess import PreprocessError, preprocess
from toolkit.errors import PackageUntrusted
from toolkit.signature import SIG_NAME, TrustedKey, key_id, verify

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT / "tests" / "bad_inputs" / "seeds"
PROFILE = yaml.safe_load((ROOT / "device_profiles" / "rpi4.yaml").read_text())
MANIFEST = json.loads((SEEDS / "manifest.json").read_text())
TABLE = json.loads((SEEDS / "latency-table.json").read_text())

BOUNDED = settings(max_examples=120, deadline=None, database=None, derandomize=bool(os.environ.get("CI")),
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
values = st.recursive(scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
                      max_leaves=8)


def _paths(obj, prefix=()):
    """Every (path) to a value inside nested dicts and lists."""
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))


@st.composite
def mutated(draw, seed):
    """``seed`` with one value replaced by anything, removed, or an unknown key added beside it."""
    doc = copy.deepcopy(seed)
    path = draw(st.sampled_from([p for p in _paths(doc) if p]))
    parent = doc
    for part in path[:-1]:
        parent = parent[part]
    how = draw(st.sampled_from(["replace", "remove", "add"]))
    if how == "replace":
        parent[path[-1]] = draw(values)
    elif how == "remove":
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent[draw(st.text(min_size=1, max_size=8))] = draw(values)
    return doc


def _written(data: bytes, name: str):
    d = tempfile.TemporaryDirectory()
    path = Path(d.name) / name
    path.write_bytes(data)
    return d, path


# ---- the profile loader: a Profile or ProfileError ----
def _load_profile(data: bytes) -> None:
    d, path = _written(data, "fuzz.yaml")
    with d:
        try:
            assert isinstance(load_profile(path), Profile)
        except ProfileError:
            pass


@BOUNDED
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
@example(b"a: &x [*x]\n")  # a recursive alias
@example(b"name: !!python/object:os.system ls\n")
@example(b"a: 1\n---\nb: 2\n")
@example("name: caf\u00e9\n".encode("latin-1"))
def test_profile_loader_on_any_text(data):
    _load_profile(data)


@BOUNDED
@given(mutated(PROFILE))
def test_profile_loader_on_mutated_profiles(doc):
    _load_profile(yaml.safe_dump(doc, allow_unicode=True).encode())


# ---- the manifest reader: (root, manifest) whose files can be checked, or PackageError ----
def _read_manifest(data: bytes) -> None:
    d, path = _written(data, "manifest.json")
    with d:
        try:
            root, m = read_manifest(path.parent)
        except PackageError:
            return
        assert all(not c.ok for c in check_files(root, m))  # the fuzzed package has no files


@BOUNDED
@given(st.binary(max_size=300) | st.builds(lambda v: json.dumps(v).encode(), values))
@example(b"[" * 100_000)  # nesting deeper than the parser's recursion limit
@example(b'{"schema_version": NaN}')
def test_manifest_reader_on_any_bytes(data):
    _read_manifest(data)


@BOUNDED
@given(mutated(MANIFEST))
def test_manifest_reader_on_mutated_manifests(doc):
    _read_manifest(json.dumps(doc).encode())


# ---- the latency-table reader: a usable table (every accessor the pack calls works) or LatencyTableError ----
def _read_table(data: bytes, name: str = "front.stem") -> None:
    d, path = _written(data, "latency-table.json")
    with d:
        try:
            t = LatencyTable(path)
            t.check_fits("rpi4", 32)
            _ = t.device, t.has_blocks, t.measured("0" * 64), t.measured("x")
            t.overhead_ms({"tf_efficientnet_lite0": 3}, {"tf_efficientnet_lite0": 1.0})
            assert t.block_ms(name) >= 0
        except LatencyTableError:
            pass


@BOUNDED
@given(st.binary(max_size=300) | st.builds(lambda v: json.dumps(v).encode(), values))
@example(b"[" * 100_000)
def test_latency_table_reader_on_any_bytes(data):
    _read_table(data)


@BOUNDED
@given(mutated(TABLE), st.sampled_from(["front.stem", "front.block00", "back.head"]))
def test_latency_table_reader_on_mutated_tables(doc, name):
    _read_table(json.dumps(doc).encode(), name)


# ---- the signature check: manifest.sig verifies with the trusted key, or PackageUntrusted ----
@pytest.fixture(scope="module")
def signed(tmp_path_factory):
    """(package, its trusted key, its manifest, its manifest.sig as parsed JSON), signed by a fresh key."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from restnet.package.signing import SigningKey, stamp, write_signature

    root = tmp_path_factory.mktemp("signed")
    private = Ed25519PrivateKey.generate()
    trusted = TrustedKey(key_id(private.public_key().public_bytes_raw()), private.public_key().public_bytes_raw(),
                         "fuzz.pub")
    key = SigningKey(trusted.key_id, private, "fuzz.key")
    m = stamp({**small_package(root), "schema_version": "1.6"}, 3, [key])
    write_signature(root, m, [key])
    return root, trusted, m, json.loads((root / SIG_NAME).read_text())


def _verify_sig(root: Path, trusted, manifest: dict, data: bytes) -> bool:
    (root / SIG_NAME).write_bytes(data)
    try:
        return verify(root, manifest, [trusted]) == trusted
    except PackageUntrusted:
        return False


@BOUNDED
@given(data=st.binary(max_size=300) | st.builds(lambda v: json.dumps(v).encode(), values))
@example(data=b"[" * 100_000)
@example(data=b'{"format": "restnet-manifest-signature", "version": 1, "signatures": [{"key_id": 1}]}')
def test_signature_check_on_any_bytes(signed, data):
    root, trusted, m, _ = signed
    assert not _verify_sig(root, trusted, m, data)


@BOUNDED
@given(data=st.data())
def test_signature_check_on_mutated_signature_files(signed, data):
    """A mutation verifies only if it left the trusted key's signature as it was (it changed a note, the
    digest, or added a field): no edit of manifest.sig makes another valid signature."""
    root, trusted, m, doc = signed
    bad = data.draw(mutated(doc))
    if _verify_sig(root, trusted, m, json.dumps(bad).encode()):
        good = doc["signatures"][0]
        assert any(s["key_id"] == good["key_id"] and s["signature"] == good["signature"] for s in bad["signatures"])


# ---- the toolkit's preprocessing: the input tensor or PreprocessError ----
SPEC = MANIFEST["input"]
images = hnp.arrays(st.sampled_from([np.uint8, np.uint16, np.float32, np.int64, bool]),
                    hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=12))


def _preprocess(image, spec) -> None:
    try:
        x = preprocess(image, spec)
    except PreprocessError:
        return
    h, w = (int(v) for v in spec["resize"]["size"])
    assert x.dtype == np.float32 and x.shape in ((1, 3, h, w), (1, h, w, 3))


@BOUNDED
@given(images)
def test_preprocess_on_any_array(image):
    _preprocess(image, SPEC)


@BOUNDED
@given(mutated(SPEC))
@example({**SPEC, "scale": []})  # found by this test: np.float32([]) is an empty array, not an error
def test_preprocess_on_any_spec(spec):
    _preprocess(np.full((5, 7, 3), 128, np.uint8), spec)


@BOUNDED
@given(st.binary(max_size=400))
@example(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
def test_preprocess_on_any_file(data):
    d, path = _written(data, "image.png")
    with d:
        try:
            preprocess(path, SPEC)
        except PreprocessError:
            pass

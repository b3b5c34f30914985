"""How a toolkit meets another manifest version: another major is refused with a message, an older or equal
minor is read strictly, a newer minor is read with its unknown (added, optional) fields ignored.

No pack needed: a small but complete manifest is built from restnet's own pydantic models.
"""
from __future__ import annotations

import copy
import json

import pytest

from restnet.package import manifest as mf
from toolkit.package import PackageError, read_manifest, reader_version, validate_manifest

SHA = "0" * 64


def _manifest() -> dict:
    """A valid manifest of the current version, with fields from every minor (1.1: family, 1.3: bundles)."""
    inp = mf.InputInfo(shape=[1, 3, 32, 32], layout="NCHW", dtype="float32", color="RGB", scale=1 / 255,
                       mean=[0.5] * 3, std=[0.5] * 3,
                       resize=mf.Resize(size=[32, 32], interpolation="bilinear", antialias=True, grayscale="replicate"))
    fe = mf.FileEntry(format="pte", path="variants/family.pte", size=10, sha256=SHA, runtime="executorch",
                      input_layout="NCHW", max_abs_diff=1e-6, max_abs_logit=3.0, scaled_diff=3e-7, top1_agreement=1.0,
                      method="m0")
    var = mf.Variant(id="v0", kind="anchor", front=mf.PartInfo(anchor="a", blocks=[0, 3]), cost=1.0, params=10,
                     flops=10, trainable_params=0, accuracy=0.5,
                     latency=[mf.Latency(ms=1.0, source="measured", where="host", threads=1, runtime="x", method="y")],
                     peak_ram_mb=9.0, fits=mf.Fits(ram=True), files=[fe])
    m = mf.Manifest(
        schema_version=mf.SCHEMA_VERSION, created="2026-12-05T00:00:00Z", restnet_version="0",
        profile=mf.ProfileInfo(name="p", description="d", backend="executorch-xnnpack", threads=1, dtype="fp32",
                               metric="params", unit="params", budgets=[1.0], band=0.0, window=0.25,
                               ram_budget_mb=100.0, storage_mb=100, bundle="shared"),
        task=mf.TaskInfo(dataset="t", num_classes=2, classes=["a", "b"], labels_file="labels.txt", val_size=4,
                         accuracy_split="test", test_size=4),
        anchors={r: mf.AnchorInfo(name="a", weights="w", accuracy=0.5, params=10, flops=10, blocks=4)
                 for r in ("front", "back")},
        input=inp, output=mf.OutputInfo(shape=[1, 2]), latency_source="unavailable", variants=[var],
        family=mf.FamilyInfo(members=3, spearman_rho=1.0, rho_p=0.0, largest_gap=0.3, gap_between=["v0", "v0"],
                             targets={"rho": 0.8}),
        bundles=[mf.SharedFile(format="pte", path="variants/family.pte", size=10, sha256=SHA, methods={"m0": "v0"})])
    return m.model_dump(mode="json", exclude_unset=True)


def _with_version(m: dict, version: str) -> dict:
    m = copy.deepcopy(m)
    m["schema_version"] = version
    return m


def test_the_toolkit_reads_the_version_restnet_writes():
    assert reader_version() == tuple(int(x) for x in mf.SCHEMA_VERSION.split("."))
    validate_manifest(_manifest())


def test_an_unknown_field_in_the_same_minor_is_refused():
    m = _manifest()
    m["variants"][0]["fils"] = []  # a typo is a mistake, not a future field
    with pytest.raises(PackageError, match=r"field 'variants/0'.*'fils' was unexpected"):
        validate_manifest(m)


def test_an_older_minor_is_read():
    m = _with_version(_manifest(), "1.0")
    for key in ("family", "bundles"):  # 1.1 and 1.3 fields: a 1.0 writer knew neither
        del m[key]
    del m["profile"]["window"], m["profile"]["bundle"], m["task"]["accuracy_split"], m["task"]["test_size"]
    del m["variants"][0]["files"][0]["method"]
    validate_manifest(m)


def test_a_newer_minor_with_unknown_optional_fields_is_read(tmp_path):
    major, minor = reader_version()
    m = _with_version(_manifest(), f"{major}.{minor + 1}")
    m["signing"] = {"key": "abc"}  # fields a later minor adds, at every level
    m["profile"]["npu"] = "none"
    m["variants"][0]["energy_mj"] = 1.5
    m["variants"][0]["files"][0]["compression"] = "zstd"
    (tmp_path / "manifest.json").write_text(json.dumps(m))
    _, got = read_manifest(tmp_path)
    assert got["variants"][0]["files"][0]["compression"] == "zstd"  # read, and left for whoever knows it


def test_a_newer_minor_is_still_checked_on_the_fields_this_reader_knows():
    major, minor = reader_version()
    m = _with_version(_manifest(), f"{major}.{minor + 1}")
    m["variants"][0]["files"][0]["sha256"] = "not-a-hash"
    with pytest.raises(PackageError, match=r"field 'variants/0/files/0/sha256'"):
        validate_manifest(m)


@pytest.mark.parametrize("version, hint", [("2.0", "toolkit for 2.x"), ("0.9", "re-pack it")])
def test_another_major_is_refused_with_a_message(version, hint):
    major, minor = reader_version()
    with pytest.raises(PackageError, match=rf"schema_version '{version}' is not supported by this toolkit "
                                           rf"\(it reads {major}\.0 to {major}\.{minor}.*{hint}"):
        validate_manifest(_with_version(_manifest(), version))


@pytest.mark.parametrize("version", ["1", "1.3.0", "v1.3", 1.3, None])
def test_a_malformed_version_is_refused(version):
    m = _manifest()
    m["schema_version"] = version
    with pytest.raises(PackageError, match="field 'schema_version'.*not MAJOR.MINOR"):
        validate_manifest(m)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_restnet_never_builds_a_manifest_with_a_non_finite_number(value):
    """NaN and infinity are not JSON (json.dumps writes them anyway): the models refuse them by field."""
    with pytest.raises(ValueError, match=r"spearman_rho\n.*finite number"):
        mf.FamilyInfo(members=3, spearman_rho=value, rho_p=1.0, largest_gap=0.3, gap_between=["a", "b"],
                      targets={"rho": 0.8})


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_the_toolkit_refuses_a_manifest_with_a_non_finite_number(tmp_path, token):
    text = json.dumps(_manifest(), indent=2).replace('"spearman_rho": 1.0', f'"spearman_rho": {token}')
    assert token in text
    (tmp_path / "manifest.json").write_text(text)
    with pytest.raises(PackageError, match=rf"manifest.json: not valid JSON: {token} is not a JSON number"):
        read_manifest(tmp_path)

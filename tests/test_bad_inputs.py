"""The bad-input corpus: every case gives one message (what, where, how to fix) and its class's exit code.

Profiles and latency tables are files under tests/bad_inputs/; data folders, archives and weight files are
made here (binary files are not committed). Each case runs the real command line in-process and stops
before any heavy work; the table of cases is docs/reliability.md's.
"""
from __future__ import annotations

import io
import os
import re
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers import TINY, TINY_PACK
from helpers import run_cli as run
from PIL import Image

from restnet.cli import main
from toolkit.errors import EXIT_CODES

HERE = Path(__file__).resolve().parent / "bad_inputs"
PROFILES, TABLES = HERE / "profiles", HERE / "tables"
USAGE, PROFILE, DATA, WEIGHTS, PACKAGE, OUTPUT = 2, 3, 4, 5, 6, 8


def pack(tmp_path: Path, *args: str) -> list[str]:
    return ["pack", *args, *([] if "--out" in args else ["--out", str(tmp_path / "pkg")]), *TINY_PACK]


# ---- profiles (exit 3) ----
@pytest.mark.parametrize("name, needles", [
    ("invalid_yaml", ["invalid_yaml.yaml, line 4, column 7: not valid YAML: expected ',' or ']', but got ':' (the "
                      "flow sequence started at line 3, column 14); fix the syntax there"]),
    ("unknown_field", ["unknown_field.yaml, line 16: field 'thread': unknown field", "did you mean 'threads'?"]),
    ("missing_field", ["missing_field.yaml: field 'backend': missing: this field is required"]),
    ("wrong_type", ["wrong_type.yaml, line 16: field 'threads': Input should be a valid integer"]),
    ("negative_budget", ["negative_budget.yaml, line 21: field 'budgets.values.0': Input should be greater than 0"]),
    ("negative_finetune", ["negative_finetune.yaml, line 20: field 'int8.finetune_images': Input should be greater "
                           "than or equal to 0"]),
    ("unknown_loss", ["unknown_loss.yaml, line 20: field 'int8.finetune_loss': Input should be 'mse' or 'kl'"]),
    ("unknown_backend", ["unknown_backend.yaml, line 15: field 'backend': Input should be 'executorch-xnnpack' or "
                         "'tflite'"]),
    ("not_a_mapping", ["not_a_mapping.yaml: expected a mapping of fields at the top level, got list"]),
])
def test_bad_profile(name, needles, tmp_path, cache):
    run(pack(tmp_path, "--profile", str(PROFILES / f"{name}.yaml")), PROFILE, *needles)
    assert not cache.exists() or not any(cache.iterdir()), "heavy work started for a bad profile"


def test_infeasible_budget_in_a_profile(tmp_path, cache):
    run(pack(tmp_path, "--profile", str(PROFILES / "infeasible_budget.yaml")), PROFILE,
        "no stitch point fits the budget 1000 params", "cheapest possible variant is")
    assert not (cache / "task-anchors").exists(), "anchors were adapted for an infeasible budget"


def test_unknown_profile_name_suggests_the_closest(tmp_path):
    run(pack(tmp_path, "--profile", "rpi9"), PROFILE, "no profile named 'rpi9'", "did you mean 'rpi5' or 'rpi4'?")


# ---- command-line arguments (exit 2, or 8 for the output folder, 6 for a latency table) ----
def test_calibration_points_without_probes_is_refused(tmp_path, cache):
    run(pack(tmp_path, "--profile", "host", "--calibration-points", "2"), USAGE,
        "--calibration-points", "add --probes")
    assert not cache.exists() or not any(cache.iterdir()), "heavy work started for a bad request"


def test_unknown_anchor_suggests_the_closest_names(tmp_path):
    run(pack(tmp_path, "--profile", "rpi4", "--front", "tf_efficientnet_lite9"), USAGE,
        "unknown anchor 'tf_efficientnet_lite9'; did you mean 'tf_efficientnet_lite2'")


def test_unknown_format(tmp_path):
    run(pack(tmp_path, "--profile", "rpi4", "--format", "coreml"), USAGE, "unknown format 'coreml'; choose from")


def test_out_that_is_a_file(tmp_path):
    """Click's own path check catches it, as a bad argument."""
    (tmp_path / "file").write_text("x")
    run(pack(tmp_path, "--profile", "rpi4", "--out", str(tmp_path / "file")), USAGE,
        "Invalid value for '--out'", "is a file")


def test_out_that_is_someone_elses_folder_is_not_replaced(tmp_path):
    mine = tmp_path / "photos"
    mine.mkdir()
    (mine / "holiday.jpg").write_text("precious")
    run(pack(tmp_path, "--profile", "rpi4", "--out", str(mine)), OUTPUT, "is not a restnet package",
        "Pass a new or empty folder")
    assert (mine / "holiday.jpg").read_text() == "precious"


def test_unwritable_out(tmp_path):
    """Root ignores permission bits, so the folder is on a read-only tmpfs (skipped where mount is refused)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)], capture_output=True).returncode:
        pytest.skip("cannot mount a read-only tmpfs here")
    try:
        run(pack(tmp_path, "--profile", "rpi4", "--out", str(ro / "pkg")), OUTPUT,
            f"--out {ro / 'pkg'}: cannot create files in {ro} (Read-only file system)")
    finally:
        subprocess.run(["umount", str(ro)], check=True)


@pytest.mark.parametrize("table, needles", [
    ("not_a_table.json", ["not_a_table.json: not a restnet-bench latency table", "pass the latency-table.json"]),
    ("garbage.json", ["garbage.json: cannot read a latency table"]),
    ("damaged.json", ["damaged.json: field 'variants.", ".p50_ms' must be a number >= 0, got 'fast'"]),
    ("other_profile.json", ["other_profile.json: measured on a package of profile 'pixel-7', this pack is for "
                            "'rpi4'"]),
    ("other_resolution.json", ["other_resolution.json: measured at 224 px, this pack runs at 32 px"]),
])
def test_bad_latency_table(table, needles, tmp_path, cache):
    run(pack(tmp_path, "--profile", "rpi4", "--latency-table", str(TABLES / table)), PACKAGE, *needles)
    assert not (cache / "task-anchors").exists()


# ---- data (exit 4, or a report of what was skipped) ----
def _png(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path)
    return path


def _folder(root: Path, classes=("cat", "dog"), per_class: int = 6) -> Path:
    rng = np.random.default_rng(0)
    for c in classes:
        for k in range(per_class):
            _png(root / c / f"{k}.png", rng.integers(0, 256, (20, 24, 3), dtype=np.uint8))
    return root


@pytest.mark.parametrize("layout, needles", [
    ({}, ["need at least 2 class sub-folders", "found 0"]),
    ({"cat": 3}, ["need at least 2 class sub-folders", "found 1 ['cat']"]),
    ({"cat": 3, "dog": 0}, ["dog: no readable images", "add images or remove the folder"]),
])
def test_unusable_image_folder(layout, needles, tmp_path):
    root = tmp_path / "pets"
    root.mkdir()
    for c, n in layout.items():
        (root / c).mkdir()
        _folder(root, (c,), n)
    run(["data", "--data", str(root)], DATA, *needles)


def test_messy_folder_loads_what_is_valid_and_reports_what_it_skipped(tmp_path):
    root = _folder(tmp_path / "pets")
    _png(root / "cat" / "gray.png", np.full((20, 24), 90, np.uint8))
    _png(root / "cat" / "rgba.png", np.full((20, 24, 4), 200, np.uint8))
    _png(root / "dog" / "deep.png", np.full((20, 24), 40000, np.uint16))  # 16-bit grayscale
    (root / "dog" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image at all")
    good = (root / "cat" / "0.png").read_bytes()
    (root / "dog" / "truncated.png").write_bytes(good[: len(good) // 2])
    out = run(["data", "--data", str(root)], 0, "skipped 2 unreadable image file(s)", "corrupt.png", "truncated.png")
    train, val = map(int, re.search(r"total\D+(\d+)\D+(\d+)", out).groups())
    assert train + val == 15, out  # 12 + gray + rgba + deep, split into train and val
    from restnet.data.transforms import load_image

    deep = load_image(root / "dog" / "deep.png", 24)
    assert np.all(deep == round(40000 / 257)), "16-bit grayscale must be scaled to 8 bits, not clipped to white"
    assert np.all(load_image(root / "cat" / "gray.png", 24) == 90)
    assert np.all(load_image(root / "cat" / "rgba.png", 24) == 200)


def test_cifar_archive_with_a_wrong_checksum(tmp_path, monkeypatch):
    fake = tmp_path / "cifar10-jpg.tar.xz"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz") as tar:
        info = tarfile.TarInfo("cifar10/train/cat/0.jpg")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    fake.write_bytes(buf.getvalue())
    monkeypatch.setenv("RESTNET_DATA", str(fake))
    run(["data"], DATA, f"{fake}: sha256", "does not match the expected", "Replace it with an intact copy")


# ---- weights (exit 5) ----
@pytest.mark.parametrize("kind, needles", [
    ("truncated", ["not a readable weights file (truncated or not a checkpoint"]),
    ("mismatched", ["1 tensors in the file", "in the model"]),
    ("not_tensors", ["not a state dict of tensors"]),
])
def test_bad_weights_file(kind, needles, tmp_path, cache):
    path = tmp_path / f"{kind}.pth"
    if kind == "not_tensors":
        torch.save({"epoch": 3, "note": "hello"}, path)
    else:
        torch.save({"conv.weight": torch.zeros(8, 3, 3, 3)}, path)
    if kind == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    run(["cka", *TINY, "--front-weights", str(path)], WEIGHTS, str(path), *needles,
        "pass an intact timm state dict of this anchor's architecture")


# ---- packages (exit 6) and the handler itself ----
def test_inspect_something_that_is_not_a_package(tmp_path):
    (tmp_path / "manifest.json").write_text("{not json")
    run(["inspect", str(tmp_path)], PACKAGE, "manifest.json: not valid JSON")


def test_bench_on_a_folder_that_is_not_a_package(tmp_path, capsys):
    from toolkit.bench import main as bench

    assert bench([str(tmp_path)]) == PACKAGE
    assert "restnet-bench: error:" in capsys.readouterr().err


def test_an_internal_error_is_one_line_unless_debug(tmp_path, monkeypatch):
    import restnet.profiles

    def bug(_name):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(restnet.profiles, "load_profile", bug)
    run(pack(tmp_path, "--profile", "rpi4"), 1, "internal error: ZeroDivisionError: a bug", "rerun with --debug")
    res = CliRunner().invoke(main, ["--debug", *pack(tmp_path, "--profile", "rpi4")])
    assert isinstance(res.exception, ZeroDivisionError), "--debug must let the traceback through"


def test_every_exit_code_is_documented():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "reliability.md").read_text()
    for code, label in EXIT_CODES.items():
        assert f"| {code} | {label} |" in doc, f"docs/reliability.md lacks the row for exit {code}"
    assert os.path.isdir(PROFILES) and len(list(PROFILES.glob("*.yaml"))) == 10


@pytest.mark.parametrize("kind", ["garbage", "pickled", "other-npz"])
def test_crosscheck_refuses_a_file_that_is_not_an_eager_reference(kind, tmp_path):
    """The device-side check names the file and how to make a good one (exit 6), never a traceback."""
    from toolkit.crosscheck import load_reference
    from toolkit.package import PackageError

    bad = tmp_path / "ref.npz"
    if kind == "garbage":
        bad.write_bytes(b"not a zip at all")
    elif kind == "pickled":
        np.savez(bad, meta=np.array([{"format": "restnet-eager-reference"}], dtype=object))
    else:
        np.savez(bad, meta=np.array('{"format": "something-else"}'))
    with pytest.raises(PackageError, match=r"ref\.npz.*restnet\.package\.reference") as err:
        load_reference(bad)
    assert err.value.exit_code == PACKAGE


def test_a_damaged_eager_reference_record_is_not_used(tmp_path, monkeypatch):
    """A reference record is a sealed cache entry: a flipped bit makes the pack write it again."""
    from restnet import cache
    from restnet.package import reference

    monkeypatch.setenv("RESTNET_CACHE", str(tmp_path))
    f = {"sha256": "ab" * 32, "path": "m.pte"}
    cache.seal(reference._root() / "images-k.npz", lambda fh: np.savez(fh, images=np.zeros(1)))
    cache.atomic_write_json({"images": "k", "logits": [[1.0, 2.0]]}, reference._record(f))
    assert reference._complete(f)
    raw = bytearray(reference._record(f).read_bytes())
    raw[raw.index(b"2.0")] = ord("3")  # still valid JSON, wrong logits
    reference._record(f).write_bytes(bytes(raw))
    assert not reference._complete(f) and not reference._record(f).exists()

"""`.tflite` for app teams: a small pixel-7 package's files run unchanged in MediaPipe's ImageClassifier
(its Python Tasks API stands in for Android's) with the toolkit's top-1.

One tiny package (real timm architectures with random weights, real CIFAR-10 images, the real converters,
writer and runtimes): two anchors and one stitched member, each with an fp32 and an int8 .tflite. Every
file must carry the manifest's labels, normalisation and its variant id as TFLite metadata and take the
image channels last, and `python -m toolkit.app_check` (in the torch-free .venv-device when there is one,
as an app would have no torch) must find MediaPipe's top-1 and category name equal to the toolkit's on
every image.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import TINY_PACK, restnet_cache
from PIL import Image

from restnet.cli import main
from restnet.export import tflite_metadata
from restnet.firmware_parity import cifar_test_jpegs
from toolkit.package import open_verified

ROOT = Path(__file__).resolve().parents[1]
DEVICE_PY = ROOT / ".venv-device" / "bin" / "python"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pkg(tmp_path_factory, shared_cache) -> Path:
    """A tiny pixel-7 package with fp32 and int8 .tflite files (int8 post-training only: what is checked
    here is that MediaPipe runs the file the toolkit runs, not how good int8 is)."""
    tmp = tmp_path_factory.mktemp("artifacts")
    out, profile = tmp / "pixel-7", tmp / "pixel-7-ptq.yaml"
    profile.write_text((ROOT / "device_profiles" / "pixel-7.yaml").read_text()
                       + "int8:\n  calibration: 32\n  finetune_images: 0\n")
    with restnet_cache(shared_cache):  # its fp32 files are test_pack's pixel-7 ones (conftest.shared_cache)
        res = CliRunner().invoke(main, ["pack", "--profile", str(profile), "--out", str(out), "--int8",
                                        "--budgets-between", "1", *TINY_PACK], catch_exceptions=False)
        assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> tuple[list[Path], list[Path]]:
    """20 CIFAR test JPEGs (32 px: the package's input size) and PNGs of other sizes and shapes."""
    d = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    pngs = []
    for w, h in [(20, 20), (41, 24), (16, 50), (96, 96)]:
        smooth = np.add.outer(np.linspace(0, 200, h), np.linspace(0, 50, w))[..., None]
        pngs.append(d / f"noise_{w}x{h}.png")
        Image.fromarray(np.clip(smooth + rng.normal(0, 30, (h, w, 3)), 0, 255).astype(np.uint8)).save(pngs[-1])
    return cifar_test_jpegs(d / "cifar", 20), pngs


def _tflite_files(m: dict) -> list[tuple[dict, dict]]:
    return [(v, f) for v in m["variants"] for f in v["files"] if f["format"] == "tflite"]


def test_every_tflite_carries_the_manifests_labels_normalisation_and_variant(pkg):
    root, m = open_verified(pkg)
    files = _tflite_files(m)
    assert sorted(f["dtype"] for _, f in files) == ["fp32"] * 3 + ["int8"] * 3
    from ai_edge_litert.interpreter import Interpreter

    for v, f in files:
        path = root / f["path"]
        md = tflite_metadata.read(path)
        spec = v.get("input") or m["input"]
        assert md["name"] == v["id"] and v["id"] in md["description"] and m["task"]["dataset"] in md["description"]
        (unit,) = md["subgraph_metadata"][0]["input_tensor_metadata"][0]["process_units"]
        assert unit["options"]["mean"] == pytest.approx([x / spec["scale"] for x in spec["mean"]], rel=1e-6)
        assert unit["options"]["std"] == pytest.approx([x / spec["scale"] for x in spec["std"]], rel=1e-6)
        with zipfile.ZipFile(path) as z:
            assert z.read("labels.txt").decode().splitlines() == m["task"]["classes"]
        n, c, h, w = spec["shape"]
        (d,) = Interpreter(model_path=str(path)).get_input_details()
        assert f["input_layout"] == "NHWC" and list(d["shape"]) == [n, h, w, c]


def _app_check(pkg: Path, files: list[Path], tmp_path: Path, *args: str) -> list[dict]:
    """toolkit.app_check where an app would run it: the torch-free device venv, else this interpreter."""
    python = DEVICE_PY if DEVICE_PY.exists() else Path(sys.executable)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(ROOT)
    out = tmp_path / "rows.json"
    res = subprocess.run([str(python), "-m", "toolkit.app_check", str(pkg), *map(str, files), "--json", str(out),
                          *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0 and "RESULT: PASS" in res.stdout, res.stdout + res.stderr
    return json.loads(out.read_text())


def test_mediapipe_image_classifier_gives_the_toolkits_top1(pkg, images, tmp_path):
    """Images at the input size: MediaPipe and the toolkit see the same pixels, so every file's top-1 and
    category name must be the toolkit's on every image, and MediaPipe's scores its logits."""
    jpegs, _ = images
    rows = _app_check(pkg, jpegs, tmp_path)
    assert len(rows) == 6 and all(r["n"] == len(jpegs) for r in rows), rows
    for r in rows:
        assert r["labels_match"], r
        if r["dtype"] == "fp32":  # the inputs differ by a float rounding only: exact top-1, scores = logits
            assert r["top1_agreement"] == 1.0 and r["max_abs_score_diff"] < 1e-3, r
        else:  # int8: a rounding can move one quantisation step, and top-1 only where that is a tie
            assert r["top1_agreement"] + r["ties"] / r["n"] == 1.0 and r["max_abs_score_diff"] < 0.5, r
    # Agreement on one constant answer would say little: the random-weight members must tell images apart.
    assert max(r["classes_predicted"] for r in rows) >= 2, rows


def test_resized_as_the_manifest_says_mediapipe_agrees_on_any_size(pkg, images, tmp_path):
    """An app that resizes as the manifest says (Pillow's resampling) gets the toolkit's top-1 whatever the
    image's size and shape."""
    _, pngs = images
    rows = _app_check(pkg, pngs, tmp_path, "--resize")
    assert all(r["top1_agreement"] + r["ties"] / r["n"] == 1.0 and r["labels_match"] for r in rows), rows
    assert all(r["ties"] == 0 for r in rows if r["dtype"] == "fp32"), rows


def test_the_check_fails_when_mediapipe_and_the_toolkit_disagree(pkg, images, tmp_path, monkeypatch):
    """The gate can fail: with the toolkit fed a mirrored image, top-1 must drop below 100 % somewhere."""
    from toolkit import app_check

    real = app_check.preprocess
    monkeypatch.setattr(app_check, "preprocess", lambda im, spec, layout: real(im[:, ::-1], spec, layout))
    jpegs, _ = images
    assert app_check.main([str(pkg), *map(str, jpegs), "--json", str(tmp_path / "r.json")]) == 1
    rows = json.loads((tmp_path / "r.json").read_text())
    assert min(r["top1_agreement"] for r in rows if r["dtype"] == "fp32") < 1.0

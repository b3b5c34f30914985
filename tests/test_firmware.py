"""The C++ runner (firmware/, restnet-run) built from this checkout, against the Python toolkit.

The build runs once per test run (session fixture, scripts/firmware.sh into a fresh folder); one tiny
rpi4 package with fp32 and int8 .pte files (module fixture) serves every check: each .pte's logits
against the toolkit's on the same image files (CIFAR JPEGs, and PNGs that the package resizes up,
down, and with either pass order), the budget switcher against toolkit.switcher, and every bad input
(missing or corrupt image, tampered package, unknown variant or manifest major) with one line on
stderr and its exit code.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import TINY_PACK, restnet_cache
from PIL import Image

from restnet.cli import main
from restnet.firmware_parity import cifar_test_jpegs, compare, run_cpp, run_python

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def firmware(tmp_path_factory) -> Path:
    """The build folder of a fresh `bash scripts/firmware.sh` (restnet-run, resize-dump)."""
    build = tmp_path_factory.mktemp("firmware-build")
    res = subprocess.run(["bash", "scripts/firmware.sh"], cwd=ROOT, capture_output=True, text=True, timeout=1200,
                         env={**os.environ, "RESTNET_FIRMWARE_BUILD": str(build)})
    assert res.returncode == 0, res.stdout + res.stderr
    return build


@pytest.fixture(scope="module")
def tiny_cache(shared_cache) -> Path:
    """The run-wide cache (conftest.shared_cache): the bundle packs pkg's family without training again, and
    test_bundle's family, the same one, is not exported twice."""
    return shared_cache


def _tiny_pack(tiny_cache: Path, out: Path, *options) -> Path:
    profile = out.parent / "rpi4-ptq.yaml"
    profile.write_text((ROOT / "device_profiles" / "rpi4.yaml").read_text() + "int8:\n  calibration: 32\n  finetune_images: 0\n")
    with restnet_cache(tiny_cache):
        res = CliRunner().invoke(main, ["pack", "--profile", str(profile), "--out", str(out), *options,
                                        "--budgets-between", "1", *TINY_PACK], catch_exceptions=False)
        assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="module")
def pkg(tmp_path_factory, tiny_cache) -> Path:
    """A tiny rpi4 package: two anchors and one stitched member, each with an fp32 and an int8 .pte. The int8
    files are post-training quantised only (no fine-tuning through the quantisers: minutes saved, and
    what is checked here is that C++ runs the file the toolkit runs)."""
    return _tiny_pack(tiny_cache, tmp_path_factory.mktemp("artifacts") / "rpi4", "--int8")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, tiny_cache, pkg) -> Path:
    """pkg's family (fp32) as one --bundle shared file, every member a method of it."""
    return _tiny_pack(tiny_cache, tmp_path_factory.mktemp("artifacts") / "rpi4-shared", "--bundle", "shared")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    """Three CIFAR test JPEGs, and PNGs the 32 px package grows in both axes, shrinks in width only, and
    shrinks in height while growing in width (Pillow's vertical-first order)."""
    d = tmp_path_factory.mktemp("images")
    jpegs = cifar_test_jpegs(d / "cifar", 10)[:3]
    rng = np.random.default_rng(0)
    pngs = []
    for w, h in [(20, 20), (41, 24), (16, 50)]:
        smooth = np.add.outer(np.linspace(0, 200, h), np.linspace(0, 50, w))[..., None]
        a = np.clip(smooth + rng.normal(0, 30, (h, w, 3)), 0, 255).astype(np.uint8)
        pngs.append(d / f"noise_{w}x{h}.png")
        Image.fromarray(a).save(pngs[-1])
    return jpegs + pngs


def _run(firmware: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([str(firmware / "restnet-run"), *map(str, args)], capture_output=True, text=True,
                          timeout=600)


@pytest.mark.parametrize("int8", [False, True], ids=["fp32", "int8"])
def test_every_pte_gives_the_toolkits_logits(firmware, pkg, images, int8):
    manifest = json.loads((pkg / "manifest.json").read_text())
    dtype = "int8" if int8 else "fp32"
    ptes = [(v["id"], f) for v in manifest["variants"] for f in v["files"] if f["format"] == "pte" and f["dtype"] == dtype]
    assert len(ptes) == len(manifest["variants"]) >= 2
    for vid, _ in ptes:
        s = compare(run_cpp(firmware / "restnet-run", pkg, images, vid, int8), run_python(pkg, images, vid, int8))
        assert s["within_gate"] == s["top1_same"] == len(images), (vid, dtype, s)


@pytest.mark.parametrize("shape", [(32, 32, 64, 64), (20, 50, 64, 64), (97, 61, 31, 120), (640, 480, 64, 64),
                                   (13, 200, 64, 64), (300, 20, 64, 64)])
@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear", "nearest"])
def test_resize_matches_pillow_to_the_grey_level(firmware, tmp_path, shape, interpolation):
    w0, h0, w, h = shape
    rng = np.random.default_rng(w0 * h0)
    a = np.clip(np.add.outer(np.linspace(0, 255, h0), np.linspace(0, 60, w0))[..., None]
                + rng.normal(0, 40, (h0, w0, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(a).save(tmp_path / "in.png")
    res = subprocess.run([str(firmware / "resize-dump"), str(tmp_path / "in.png"), str(w), str(h), interpolation],
                         capture_output=True, check=True)
    ours = np.frombuffer(res.stdout, np.uint8).reshape(h, w, 3)
    pillow = np.asarray(Image.fromarray(a).resize((w, h), getattr(Image.Resampling, interpolation.upper())))
    assert np.array_equal(ours, pillow), f"max |Δ| {np.abs(ours.astype(int) - pillow).max()} grey levels"


def test_budget_picks_the_toolkits_variant(firmware, pkg, images, tmp_path):
    """On a copy whose accuracies rise with cost, as a real ladder's do (the tiny package's random-weight
    variants tie), every budget picks the same variant in C++ as in toolkit.switcher."""
    from restnet.export.pte import device_loader
    from toolkit.switcher import Package, Switcher

    def ladder(m, _):
        for k, v in enumerate(sorted(m["variants"], key=lambda v: v["latency"][-1]["ms"])):
            v["accuracy"] = 0.5 + 0.1 * k
            for f in v["files"]:
                f.pop("accuracy", None)

    pkg = _copy(pkg, tmp_path / "ladder", ladder)
    py = Package(pkg, pte_fallback=device_loader)
    lat = sorted(py.latency_ms(v)[0] for v in py.variants)
    picked = set()
    for budget in [lat[0] * 0.5, *lat, lat[-1] * 2]:
        want = Switcher(py, latency_ms=budget)
        res = _run(firmware, pkg, images[0], "--budget-ms", budget, "--json")
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["variant"] == want.active, budget
        assert ("no variant meets the budget" in res.stderr) == (not want.within_budget)
        picked.add(want.active)
    assert len(picked) >= 2, "the budgets should walk the ladder"
    ram = min(v["peak_ram_mb"] for v in py.variants)
    res = _run(firmware, pkg, images[0], "--ram-mb", ram, "--json")
    assert json.loads(res.stdout)["variant"] == Switcher(py, latency_ms=None, ram_mb=ram).active


def _copy(pkg: Path, dest: Path, edit=None) -> Path:
    shutil.copytree(pkg, dest)
    if edit:
        m = json.loads((dest / "manifest.json").read_text())
        edit(m, dest)
        (dest / "manifest.json").write_text(json.dumps(m))
    return dest


def _set_path(path):
    def edit(m, _):
        m["variants"][0]["files"][0]["path"] = path
    return edit


def _flip_a_byte(m, d):
    f = d / m["variants"][-1]["files"][0]["path"]
    b = bytearray(f.read_bytes())
    b[len(b) // 2] ^= 1
    f.write_bytes(bytes(b))


@pytest.mark.parametrize("case, edit, code, message", [
    ("sha256", _flip_a_byte, 1, "sha256"),
    ("dotdot", _set_path("../manifest.json"), 1, "points outside the package"),
    ("absolute", _set_path("/etc/passwd"), 1, "points outside the package"),
    ("major", lambda m, d: m.update(schema_version="2.0"), 1, "schema_version '2.0' is not supported"),
    ("size", lambda m, d: m["variants"][0]["files"][0].update(size=m["variants"][0]["files"][0]["size"] + 1), 1,
     "size"),
])
def test_a_tampered_package_is_refused_in_one_line(firmware, pkg, images, tmp_path, case, edit, code, message):
    bad = _copy(pkg, tmp_path / case, edit)
    res = _run(firmware, bad, images[0])
    assert res.returncode == code and res.stdout == ""
    assert len(res.stderr.strip().splitlines()) == 1 and message in res.stderr, res.stderr


def test_bad_requests_get_one_line_and_an_exit_code(firmware, pkg, images, tmp_path):
    (tmp_path / "truncated.jpg").write_bytes(images[0].read_bytes()[:200])
    (tmp_path / "text.png").write_text("not an image")
    cases = [([pkg, tmp_path / "missing.jpg"], 3, "cannot open"),
             ([pkg, tmp_path / "truncated.jpg"], 3, "not a readable image"),
             ([pkg, tmp_path / "text.png"], 3, "not a readable image"),
             ([pkg, images[0], "--variant", "nope"], 1, "no variant 'nope'"),
             ([tmp_path, images[0]], 1, "not a restnet package"),
             ([pkg, images[0], "--budget-ms", "fast"], 2, "--budget-ms")]
    for args, code, message in cases:
        res = _run(firmware, *args)
        assert res.returncode == code and message in res.stderr, (args, res.returncode, res.stderr)
        assert len(res.stderr.strip().splitlines()) == (1 if code != 2 else 2), res.stderr


def test_the_readme_cpp_example_compiles_and_runs(firmware, pkg, images, tmp_path):
    """The package README's Loading section: its CMake snippet and C++ program, built as they are."""
    from restnet.package.firmware import CPP_CMAKE, CPP_EXAMPLE

    assert CPP_EXAMPLE in (pkg / "README.md").read_text()
    (tmp_path / "CMakeLists.txt").write_text(CPP_CMAKE)
    (tmp_path / "classify.cpp").write_text(CPP_EXAMPLE)
    venv = ROOT / ".venv" / "bin"
    et = subprocess.run([str(venv / "python"), "-c", "import importlib.util; print(importlib.util.find_spec("
                         "'executorch').submodule_search_locations[0])"], capture_output=True, text=True, check=True)
    for cmd in ([str(venv / "cmake"), "-S", str(tmp_path), "-B", str(tmp_path / "build"), "-G", "Ninja",
                 f"-DCMAKE_MAKE_PROGRAM={venv / 'ninja'}", f"-DRESTNET_FIRMWARE={ROOT / 'firmware'}",
                 f"-Dexecutorch_DIR={et.stdout.strip()}/share/cmake"],
                [str(venv / "cmake"), "--build", str(tmp_path / "build")]):
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    res = subprocess.run([str(tmp_path / "build" / "classify"), str(pkg), str(images[0])], capture_output=True,
                         text=True, timeout=300)
    want = json.loads(_run(firmware, pkg, images[0], "--json").stdout)
    assert res.returncode == 0 and res.stdout.split() == [want["variant"], want["label"]], res.stderr


def test_switching_in_a_shared_bundle_runs_the_separate_files_models(firmware, pkg, bundle):
    """restnet-switch loads every member and then the first again, in one process: from the bundle (one file
    loaded, a method per switch, none to switch back; XNNPACK's weight cache on and off) each member gives
    its separate file's logits, and the toolkit (benchmarks/_switch_child.py, the Python side of
    benchmarks/firmware_switch.py) gives the same on that input."""
    ids = [v["id"] for v in json.loads((pkg / "manifest.json").read_text())["variants"]]
    assert ids == [v["id"] for v in json.loads((bundle / "manifest.json").read_text())["variants"]]
    order = ",".join([*ids, ids[0]])

    def switch(cmd):
        res = subprocess.run([*map(str, cmd)], capture_output=True, text=True, timeout=600,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout.strip().splitlines()[-1])

    files = switch([firmware / "restnet-switch", pkg, order])
    shared = switch([firmware / "restnet-switch", bundle, order])
    uncached = switch([firmware / "restnet-switch", bundle, order, "--no-weight-cache"])
    python = switch([ROOT / ".venv" / "bin" / "python", ROOT / "benchmarks" / "_switch_child.py", bundle, order])
    assert shared["weight_cache_supported"] and shared["weight_cache"] and not uncached["weight_cache"]
    assert files["files_loaded"] == len(ids) and shared["files_loaded"] == uncached["files_loaded"] == 1
    assert [s["new_file"] for s in shared["steps"]] == [True] + [False] * len(ids)
    assert [s["new_method"] for s in shared["steps"]] == [True] * len(ids) + [False]
    assert files["steps"][-1]["logits"] == files["steps"][0]["logits"]
    for run in (shared, uncached, python):
        assert [s["variant"] for s in run["steps"]] == [s["variant"] for s in files["steps"]]
        for s, t in zip(files["steps"], run["steps"]):
            assert np.array_equal(np.float32(t["logits"]), np.float32(s["logits"])), (s["variant"], run.get("runtime"))
    res = subprocess.run([str(firmware / "restnet-switch"), str(bundle), f"{ids[0]},nope"], capture_output=True, text=True)
    assert res.returncode == 1 and "no variant 'nope'" in res.stderr and res.stdout == ""


def test_a_key_twice_in_the_manifest_is_refused(firmware, pkg, images, tmp_path):
    """Parsers disagree on which of two values wins, so the toolkit refuses such a manifest; so does C++."""
    bad = _copy(pkg, tmp_path / "twice")
    text = (bad / "manifest.json").read_text()
    (bad / "manifest.json").write_text(text.replace('"schema_version"', '"schema_version": "9.0", "schema_version"', 1))
    res = _run(firmware, bad, images[0])
    assert res.returncode == 1 and "key 'schema_version' appears twice" in res.stderr, res.stderr

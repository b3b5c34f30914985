"""`restnet-pack --bundle shared`: the family as one file, one method (.pte) or signature (.tflite) per variant,
the anchors' weights once.

Real timm architectures (random weights), real data slices, the real ExecuTorch exporter and runtimes:
every member is run from the shared file and compared with eager, the toolkit switches members inside it
without loading the file twice, and the file is about as large as the two anchors alone.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import TINY_PACK, restnet_cache

from restnet.cli import main
from restnet.export.pte import device_loader
from toolkit import runtime
from toolkit.package import open_verified
from toolkit.switcher import Package, Switcher

ROOT = Path(__file__).resolve().parents[1]
DEVICE_PY = ROOT / ".venv-device" / "bin" / "python"
needs_device_venv = pytest.mark.skipif(not DEVICE_PY.exists(), reason="no .venv-device (scripts/setup.sh makes it)")
pytestmark = pytest.mark.slow


def _pack(out: Path, *args: str, profile: str = "rpi4") -> str:
    res = CliRunner().invoke(main, ["pack", "--profile", profile, "--out", str(out), "--budgets-between", "1",
                                    *TINY_PACK, *args], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


@pytest.fixture(scope="module")
def cache(shared_cache):
    with restnet_cache(shared_cache) as path:
        yield path


@pytest.fixture(scope="module")
def packs(tmp_path_factory, cache):
    """The same tiny rpi4 family twice from one cache: one file per variant, and shared."""
    base = tmp_path_factory.mktemp("artifacts")
    _pack(base / "files")
    log = _pack(base / "shared", "--bundle", "shared")
    return base / "files", base / "shared", log


@pytest.fixture(scope="module")
def tflite_pack(tmp_path_factory, cache):
    """A tiny pixel-7 family (LiteRT) as one multi-signature .tflite."""
    out = tmp_path_factory.mktemp("artifacts") / "pixel-7"
    _pack(out, "--bundle", "shared", profile="pixel-7")
    return out


def _device(args: list[str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(ROOT)
    res = subprocess.run([str(DEVICE_PY), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    return res


def test_the_manifest_records_file_and_method_per_member(packs):
    _, shared, log = packs
    _, m = open_verified(shared)
    (b,), ids = m["bundles"], [v["id"] for v in m["variants"]]
    assert m["profile"]["bundle"] == "shared" and b["format"] == "pte"
    assert list(b["methods"].values()) == ids and len(ids) == 3  # lite0, one stitched member, lite2
    for v in m["variants"]:
        f = v["files"][0]
        assert (f["path"], f["sha256"], f["size"]) == (b["path"], b["sha256"], b["size"])
        assert b["methods"][f["method"]] == v["id"]
        # each method was run by ExecuTorch on the whole validation split and held to the export gates
        assert f["scaled_diff"] <= 1e-4 and f["top1_agreement"] >= 0.999
    assert sorted(p.name for p in (shared / "variants").iterdir()) == [Path(b["path"]).name]
    assert "methods" in log and "MB for 3 variants" in log


def test_the_shared_file_stores_the_anchors_once(packs):
    files, shared, _ = packs
    _, mf_ = open_verified(files)
    _, ms = open_verified(shared)
    per_member = sum(v["files"][0]["size"] for v in mf_["variants"])
    anchors = sum(v["files"][0]["size"] for v in mf_["variants"] if v["kind"] == "anchor")  # each exported alone
    bundle = ms["bundles"][0]["size"]
    assert bundle <= 1.05 * anchors, (bundle, anchors)
    assert bundle < 0.75 * per_member, (bundle, per_member)
    # the same members, the same accuracies: only the layout differs
    assert [(v["id"], v["accuracy"]) for v in ms["variants"]] == [(v["id"], v["accuracy"]) for v in mf_["variants"]]


def test_switching_inside_the_bundle_is_a_method_change(packs):
    _, shared, _ = packs
    pkg = Package(shared, pte_fallback=device_loader)
    sw = Switcher(pkg, latency_ms=None)  # the most accurate member
    fastest = min(pkg.variants, key=lambda v: pkg.latency_ms(v)[0])
    sw.set_budget(latency_ms=pkg.latency_ms(fastest)[0])
    sw.set_budget(latency_ms=None)
    for v in pkg.variants:  # and every other member
        pkg.program(v["id"])
    assert set(pkg.held) == {v["id"] for v in pkg.variants}
    assert pkg.loads == 1 and len(pkg.files_held) == 1, "the shared file was loaded more than once"


def test_a_reader_that_ignores_method_is_refused_by_the_runtime(packs):
    """What a reader older than 1.3 does with a shared file: it asks for 'forward', which is not there."""
    _, shared, _ = packs
    _, m = open_verified(shared)
    path = shared / m["bundles"][0]["path"]
    with pytest.raises(Exception, match="forward"):
        runtime.load(path, "pte", pte_fallback=device_loader)


@needs_device_venv
def test_every_member_from_the_bundle_matches_eager_without_torch(packs, tmp_path):
    """The torch-free crosscheck runs every method of the shared file with executorch-numpy-runtime on the
    exact inputs eager saw at pack time, under the export gates."""
    from restnet.package import reference

    _, shared, _ = packs
    ref = tmp_path / "reference.npz"  # from the eager logits the pack stored in the (module's) cache
    meta = reference.gather(shared, ref)
    assert [mb["method"] for mb in meta["members"]] == [v["files"][0]["method"]
                                                        for v in json.loads((shared / "manifest.json").read_text())
                                                        ["variants"]]
    res = _device(["-m", "toolkit.crosscheck", str(shared), str(ref), "--json", str(tmp_path / "r.json")])
    assert "RESULT: PASS" in res.stdout, res.stdout
    out = json.loads((tmp_path / "r.json").read_text())
    assert out["switcher_ok"] and len(out["members"]) == 3 and all(r["gate"] for r in out["members"])
    assert all(r["runtime"].startswith("executorch-numpy-runtime") for r in out["members"])


@needs_device_venv
def test_bench_times_members_and_two_live_members_of_the_bundle(packs, tmp_path):
    _, shared, _ = packs
    table_path = tmp_path / "t.json"
    res = _device(["-m", "toolkit.bench", str(shared), "--runs", "5", "--warmup", "1", "--out", str(table_path)])
    assert "live: switch" in res.stdout
    table = json.loads(table_path.read_text())
    m = json.loads((shared / "manifest.json").read_text())
    b = m["bundles"][0]
    assert set(table["variants"]) == {f"{b['sha256']}:{name}" for name in b["methods"]}
    live = table["bundles"][b["sha256"]]
    assert live["methods"] == [next(iter(b["methods"])), list(b["methods"])[-1]]
    assert live["peak_rss_mb"] > live["baseline_rss_mb"] > 0 and live["switch_ms"] > 0


@needs_device_venv
def test_the_readme_toolkit_example_works_on_a_bundled_package(packs):
    _, shared, _ = packs
    text = (ROOT / "README.md").read_text()
    code = re.search(r"<!-- toolkit-example -->\s*```python\n(.*?)```", text, re.S).group(1)
    code = code.replace("artifacts/host", str(shared)) + (
        "\nimport sys\nassert 'torch' not in sys.modules\n"
        "print('BUNDLE OK', len(pkg.held), pkg.loads)\n")
    out = _device(["-c", code]).stdout
    active = {ln.split()[1] for ln in out.splitlines() if ln.startswith("active:")}
    assert f"BUNDLE OK {len(active)} 1" in out, out  # every member it switched to held, one file loaded


def test_a_tflite_family_is_one_file_with_a_signature_per_member(tflite_pack):
    _, m = open_verified(tflite_pack)
    (b,) = m["bundles"]
    assert b["format"] == "tflite" and b["path"].endswith(".family.tflite") and len(b["methods"]) == 3
    for v in m["variants"]:
        f = v["files"][0]
        assert f["path"] == b["path"] and b["methods"][f["method"]] == v["id"]
        assert f["scaled_diff"] <= 1e-4 and f["top1_agreement"] >= 0.999  # each signature, whole val split
    pkg = Package(tflite_pack)
    for v in pkg.variants:
        pkg.program(v["id"])
    assert pkg.loads == 1 and set(pkg.held) == {v["id"] for v in pkg.variants}
    with pytest.raises(ValueError, match="SignatureDef"):  # what a reader that ignores 'method' meets
        runtime.load(tflite_pack / b["path"], "tflite")


def test_the_tflite_family_file_carries_metadata_and_says_what_it_describes(tflite_pack):
    """Labels and normalisation in the shared file too; its description names every signature and sends
    MediaPipe users to the per-variant files, since ImageClassifier opens one subgraph."""
    import zipfile

    from restnet.export import tflite_metadata

    _, m = open_verified(tflite_pack)
    (b,) = m["bundles"]
    md = tflite_metadata.read(tflite_pack / b["path"])
    assert md["name"] == "pixel-7.family" and all(vid in md["description"] for vid in b["methods"].values())
    assert "--bundle files" in md["description"]
    with zipfile.ZipFile(tflite_pack / b["path"]) as z:
        assert z.read("labels.txt").decode().splitlines() == m["task"]["classes"]
    assert all(v["files"][0]["input_layout"] == "NHWC" for v in m["variants"])


@needs_device_venv
def test_every_signature_from_the_tflite_bundle_matches_eager_without_torch(tflite_pack, tmp_path):
    from restnet.package import reference

    ref = tmp_path / "reference.npz"
    reference.gather(tflite_pack, ref)
    res = _device(["-m", "toolkit.crosscheck", str(tflite_pack), str(ref), "--json", str(tmp_path / "r.json")])
    assert "RESULT: PASS" in res.stdout, res.stdout
    out = json.loads((tmp_path / "r.json").read_text())
    assert len(out["members"]) == 3 and all(r["gate"] and r["method"] for r in out["members"])

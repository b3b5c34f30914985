"""restnet-pack and restnet inspect: bad requests stop early, packages verify, writes are atomic."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import TINY_PACK, restnet_cache

from restnet.cli import main
from restnet.package import manifest as mf
from restnet.package.writer import staged_dir
from toolkit.package import PackageError, check_files, open_verified, read_manifest, safe_path

GOOD = Path(__file__).resolve().parents[1] / "device_profiles" / "rpi4.yaml"


def _pack(args, expect=0):
    res = CliRunner().invoke(main, ["pack", *args], catch_exceptions=False)
    assert res.exit_code == expect, res.output
    return res.output


def _profile(tmp_path, text: str) -> str:
    p = tmp_path / "dev.yaml"
    p.write_text(text)
    return str(p)


def _edit(field: str, new: str) -> str:
    return "\n".join(new if line.startswith(field) else line for line in GOOD.read_text().splitlines()) + "\n"


@pytest.mark.parametrize("text, needle", [
    ("name: [unclosed\n", "not valid YAML"),
    (GOOD.read_text() + "gpu: true\n", "field 'gpu': unknown field"),
    (_edit("threads:", "threads: four"), "field 'threads'"),
    (_edit("compute_gmacs:", "compute_gmacs: -1"), "field 'compute_gmacs'"),
    (_edit("compute_gmacs:", "compute_gflops: -1"), "field 'compute_gflops'"),  # the old name, still read
    (_edit("  ladder:", "  values: [-5]"), "field 'budgets.values.0'"),
])
def test_malformed_profile_stops_before_any_work(text, needle, tmp_path, cache):
    path = _profile(tmp_path, text)
    out = _pack(["--profile", path, "--out", str(tmp_path / "pkg"), *TINY_PACK], expect=3)
    assert path in out and needle in out
    assert not cache.exists() or not any(cache.iterdir()), "heavy work started for a bad profile"
    assert not (tmp_path / "pkg").exists()


def test_infeasible_budget_names_the_cheapest_variant_before_adaptation(tmp_path, cache):
    out = _pack(["--profile", "rpi4", "--metric", "params", "--budget", "1000", "--out", str(tmp_path / "pkg"),
                 *TINY_PACK], expect=3)
    assert "no stitch point fits the budget 1000 params" in out and "cheapest possible variant is" in out
    assert not (cache / "task-anchors").exists(), "anchors were adapted before the budget was checked"


def test_unknown_profile_and_format(tmp_path):
    assert "no profile named 'rpi9'" in _pack(["--profile", "rpi9"], expect=3)
    assert "unknown format 'coreml'" in _pack(["--profile", "rpi4", "--format", "coreml"], expect=2)


def test_committed_schema_is_the_generated_one():
    """The toolkit validates against its committed copy: it must be the manifest model's schema."""
    committed = (Path(__file__).resolve().parents[1] / "toolkit" / "manifest.schema.json").read_text()
    assert committed == mf.schema_text(), "run: python -c 'from restnet.package.manifest import schema_text; " \
                                          "open(\"toolkit/manifest.schema.json\",\"w\").write(schema_text())'"


def test_the_manifests_profile_section_is_read_from_the_profile_with_its_overrides():
    """Firmware teams parse this section: its keys, their order and values are pinned (a value the command line
    overrode is recorded as given; threads are the device's, not the host's)."""
    from types import SimpleNamespace

    from restnet.commands.pack import make_request
    from restnet.package.assemble import _profile_info

    req = make_request("rpi4", None, (), {"band": 0.1, "metric": "params"}, threads=1)
    ladder = SimpleNamespace(limits={"ram": 1024.0}, binding="ram")
    got = _profile_info(req, [1e6, 2e6], ladder, "files", None).model_dump(mode="json", exclude_unset=True)
    assert json.dumps(got) == json.dumps({
        "name": "rpi4", "description": "Raspberry Pi 4 Model B, 4 GB, 64-bit Raspberry Pi OS, CPU inference with "
        "XNNPACK", "backend": "executorch-xnnpack", "threads": 4, "dtype": "fp32", "metric": "params",
        "unit": "params", "budgets": [1e6, 2e6], "band": 0.1, "window": 0.25, "ram_budget_mb": 1024.0,
        "storage_mb": 2048, "compute_gmacs": 0.5, "latency_target_ms": 50.0, "budget_mode": "ladder",
        "limits": {"ram": 1024.0}, "binding_limit": "ram", "bundle": "files"})
    got = _profile_info(req, [1e6], None, "shared", "computed").model_dump(mode="json", exclude_unset=True)
    assert list(got)[-3:] == ["budget_mode", "bundle", "cost_source"] and got["bundle"] == "shared"


def test_staged_dir_keeps_the_old_package_when_a_pack_fails(tmp_path):
    out = tmp_path / "pkg"
    with staged_dir(out) as d:
        (d / "manifest.json").write_text("old")
    with pytest.raises(RuntimeError), staged_dir(out) as d:
        (d / "manifest.json").write_text("half-written new")
        raise RuntimeError("export failed")
    assert (out / "manifest.json").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["pkg"], "temporary folders left behind"
    with staged_dir(out) as d:
        (d / "manifest.json").write_text("new")
    assert (out / "manifest.json").read_text() == "new"


@pytest.mark.parametrize("name", ["../x.pte", "/etc/passwd", "variants/../../x", "a//b", "~root/x", "a\\..\\b", ""])
def test_paths_outside_the_package_are_refused(name, tmp_path):
    with pytest.raises(PackageError, match="manifest"):
        safe_path(tmp_path, name)


def test_symlink_escape_is_refused(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "secret").write_text("x")
    (tmp_path / "pkg" / "link").symlink_to(tmp_path / "secret")
    with pytest.raises(PackageError, match="outside the package"):
        safe_path(tmp_path / "pkg", "link")


# ---- end to end (real timm models with random weights, real data, real exporters and runtimes) ----

# The shared package: tiny sizes, two extra formats, anchors adapted until converged (here: a 2-epoch limit).
PACKED = ["--profile", "rpi4", "--format", "torchscript,onnx", "--budgets-between", "1", *TINY_PACK,
          "--adapt-epochs", "auto", "--adapt-max-epochs", "2"]


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """One rpi4 package (pte) plus torchscript and onnx, tiny sizes; shared by the checks below."""
    out = tmp_path_factory.mktemp("artifacts") / "rpi4"
    with restnet_cache(tmp_path_factory.mktemp("cache")):
        text = _pack([*PACKED, "--out", str(out)])
        yield out, text


@pytest.mark.slow
def test_pack_writes_a_verified_package(packed):
    out, text = packed
    assert f"package: {out.resolve()}" in text.strip().splitlines()[-1]
    root, m = open_verified(out)  # schema + every sha256
    mf.Manifest.model_validate(m)
    for name in ("labels.txt", "manifest.schema.json", "README.md", "report.md", "cka.png", "accuracy_vs_cost.png"):
        assert (out / name).is_file(), name
    assert (out / "labels.txt").read_text().splitlines() == m["task"]["classes"]
    costs = [v["cost"] for v in m["variants"]]
    assert costs == sorted(costs)
    stitched = [v for v in m["variants"] if v["kind"] == "stitched"]
    anchors = [v for v in m["variants"] if v["kind"] == "anchor"]
    assert stitched and len(anchors) == 2
    lo, hi = sorted(a["cost"] for a in anchors)
    assert all(lo <= v["cost"] <= hi for v in stitched)
    for v in m["variants"]:
        assert [f["format"] for f in v["files"]] == ["pte", "torchscript", "onnx"]
        for f in v["files"]:
            assert f["scaled_diff"] <= 1e-4 and f["top1_agreement"] >= 0.999
            assert f["max_abs_diff"] <= 1e-4 * max(1.0, f["max_abs_logit"])
        host = v["latency"][0]  # timed clean, or said to be too busy to time (another job held the cores)
        assert host["source"] == "measured" or "too busy to time this file" in host["method"], host
        assert v["latency"][1]["source"] == "estimated"
    assert m["latency_source"] == "estimated"
    fam = m["family"]  # ladder statistics, recomputed from the variants
    from restnet.package.family import family_stats

    assert fam == family_stats(m["variants"]) and fam["members"] == len(m["variants"])
    assert "Spearman rho(cost, top-1)" in text and "largest cost gap" in text
    for a in m["anchors"].values():  # the control: each anchor given the members' training
        alike = a["trained_alike"]
        assert 0 <= alike["accuracy"] <= 1 and alike["after_block"] == a["blocks"] // 2
        assert f"control: {a['name']} trained alike" in text
        assert f"| {a['name']} | {a['accuracy']:.2%} | {alike['accuracy']:.2%}" in (out / "report.md").read_text()
        curve = a["adaptation"]["curve"]  # adapted until converged (here: its 2-epoch limit)
        assert a["adaptation"]["stopped"] == "epoch limit" and curve[-1]["epochs"] == 2
        assert f"Adaptation of {a['name']}: val top-1 by epochs" in (out / "report.md").read_text()
        assert f"anchor {a['name']}: val top-1 by epochs" in text


@pytest.mark.slow
def test_exported_pte_runs_in_executorch_and_matches_the_manifest_accuracy(packed):
    """Run every .pte on the test split ourselves: accuracy must equal the manifest's (which says test)."""
    from restnet.data import load_task, to_model_input
    from restnet.data.transforms import InputSpec
    from restnet.export import get_format

    out, _ = packed
    m = json.loads((out / "manifest.json").read_text())
    assert (m["task"]["dataset"], m["task"]["accuracy_split"], m["task"]["test_size"]) == ("cifar10", "test", 48)
    task = load_task("cifar10", 128, 48, 0, 32, test_size=48)
    spec = InputSpec.from_manifest(m["input"])
    x = np.concatenate([to_model_input(imgs, spec).numpy() for imgs, _ in task.raw_loader(task.test, 48)])
    y = np.asarray(task.test.labels)
    for v in m["variants"]:
        run = get_format("pte").load(out / next(f["path"] for f in v["files"] if f["format"] == "pte"))
        pred = np.array([run(x[k:k + 1]).argmax() for k in range(len(x))])
        assert abs((pred == y).mean() - v["accuracy"]) <= 1 / len(y) + 1e-9


@pytest.mark.slow
def test_inspect_verifies_and_catches_one_tampered_byte(packed, tmp_path):
    out, _ = packed
    res = CliRunner().invoke(main, ["inspect", str(out)])
    assert res.exit_code == 0 and "files verified" in res.output
    copy = tmp_path / "pkg"
    shutil.copytree(out, copy)
    _, m = read_manifest(copy)
    victim = copy / m["variants"][-1]["files"][0]["path"]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    bad = [c for c in check_files(copy, m) if not c.ok]
    assert len(bad) == 1 and "sha256" in bad[0].detail
    res = CliRunner().invoke(main, ["inspect", str(copy)])
    assert res.exit_code == 6 and "1 of" in res.output
    with pytest.raises(PackageError, match="refusing to load"):
        open_verified(copy)


@pytest.mark.slow
def test_second_pack_is_served_from_cache(packed, monkeypatch):
    """Nothing is trained or exported again: every optimiser step and every export would raise."""
    import torch

    out, _ = packed
    before = json.loads((out / "manifest.json").read_text())

    def refuse(what):
        def fail(*_a, **_kw):
            raise AssertionError(f"a warm pack ran {what} again instead of reusing the cache")
        return fail

    for opt in (torch.optim.SGD, torch.optim.AdamW):
        monkeypatch.setattr(opt, "step", refuse(f"{opt.__name__}.step"))
    monkeypatch.setattr("restnet.package.exports.export_verified", refuse("an export"))
    _pack([*PACKED, "--out", str(out)])
    after = json.loads((out / "manifest.json").read_text())
    sha = lambda m: [f["sha256"] for v in m["variants"] for f in v["files"]]  # noqa: E731
    assert sha(before) == sha(after), "a warm pack must reuse the verified exports byte for byte"


@pytest.mark.slow
def test_pixel7_package_holds_tflite_that_litert_runs(tmp_path, shared):
    out = tmp_path / "pixel-7"
    _pack(["--profile", "pixel-7", "--out", str(out), "--no-anchors", "--budgets-between", "1", *TINY_PACK])
    root, m = open_verified(out)
    from ai_edge_litert.interpreter import Interpreter

    n, c, h, w = m["input"]["shape"]
    for v in m["variants"]:
        (f,) = v["files"]
        assert f["format"] == "tflite" and f["runtime"].startswith("ai-edge-litert")
        # The file takes the image channels last, as the manifest says (and MediaPipe needs).
        assert f["input_layout"] == "NHWC"
        it = Interpreter(model_path=str(root / f["path"]))
        runner = it.get_signature_runner()
        name = next(iter(it.get_signature_list()["serving_default"]["inputs"]))
        logits = next(iter(runner(**{name: np.zeros((n, h, w, c), np.float32)}).values()))
        assert logits.shape == tuple(m["output"]["shape"])
    assert m["latency_source"] == "unavailable" and all(len(v["latency"]) == 1 for v in m["variants"])


@pytest.mark.slow
@pytest.mark.parametrize("profile, fmt", [("rpi4", "pte"), ("pixel-7", "tflite")])
def test_int8_files_report_agreement_with_fp32(profile, fmt, tmp_path, shared):
    out = tmp_path / f"{profile}-int8"
    _pack(["--profile", profile, "--out", str(out), "--int8", "--no-anchors", "--budgets-between", "1", *TINY_PACK])
    root, m = open_verified(out)
    from restnet.export.pte import device_loader
    from toolkit.runtime import load

    x = np.random.default_rng(0).uniform(-1, 1, m["input"]["shape"]).astype(np.float32)
    for v in m["variants"]:
        fp32, int8 = v["files"]
        assert (fp32["format"], int8["format"]) == (fmt, fmt)
        assert (fp32["dtype"], int8["dtype"]) == ("fp32", "int8") and int8["path"].endswith(f".int8.{fmt}")
        assert 0.0 <= int8["top1_agreement"] <= 1.0 and int8["flagged"] == (int8["check_agreement"] < 0.98)
        # The flag's check: the 48 val images and 3 x 48 of the training images --train-size 128 left unused;
        # the val images' share of it is top1_agreement.
        val = m["task"]["val_size"]
        assert int8["check_images"] == val + 3 * val
        assert "left float: entry, classifier" in int8["recipe"] and "fine-tuned" in int8["recipe"]
        spare_same = int8["check_agreement"] * int8["check_images"] - int8["top1_agreement"] * val
        assert abs(spare_same - round(spare_same)) < 1e-6 and 0 <= round(spare_same) <= 3 * val
        assert int8["size"] < 0.5 * fp32["size"], "int8 weights should be about a quarter of fp32"
        # Both run through the device runtime with float32 in and out (a .tflite int8 model has int8
        # tensors at its edges: the runtime applies their scale and zero point). How close int8 logits
        # come to fp32 is tested on real weights in test_export; these tiny random anchors say little.
        xin = np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if int8["input_layout"] == "NHWC" else x
        got = load(root / int8["path"], fmt, pte_fallback=device_loader)[0](xin)
        assert got.dtype == np.float32 and got.shape == tuple(m["output"]["shape"]) and np.isfinite(got).all()
        assert int8["runtime"] == fp32["runtime"]
    # On the device: the switcher runs the int8 files and ranks by their own accuracy; restnet-bench
    # times both files of every variant, each under its own sha256, and the switcher reads the int8 one.
    from toolkit.bench import run_bench
    from toolkit.switcher import Package, Switcher

    pkg = Package(out, dtype="int8", pte_fallback=device_loader)
    sw = Switcher(pkg, latency_ms=1e9)
    active = pkg.variant(sw.active)
    assert pkg.program(sw.active)[1]["dtype"] == "int8"
    assert pkg.accuracy(active) == max(v["files"][1]["accuracy"] for v in m["variants"])
    assert len(sw.classify(np.zeros((28, 28), np.uint8), top=3)) == 3
    path, table = run_bench(out, runs=3, warmup=1, device="test-host", out=tmp_path / "table.json",
                            progress=lambda _: None, pte_fallback=device_loader)
    assert {(e["id"], e["dtype"]) for e in table["variants"].values()} == \
        {(v["id"], d) for v in m["variants"] for d in ("fp32", "int8")}
    pkg = Package(out, dtype="int8", table=path, pte_fallback=device_loader)
    v = m["variants"][0]
    assert pkg.latency_ms(v) == (table["variants"][v["files"][1]["sha256"]]["p50_ms"], "measured here (test-host)")


def test_int8_without_an_int8_route_stops_before_any_work(tmp_path, cache):
    out = _pack(["--profile", "pixel-7", "--tflite-converter", "onnx2tf", "--int8", "--out", str(tmp_path / "p"),
                 *TINY_PACK], expect=3)
    assert "int8 is available for the formats pte, tflite, not for tflite-onnx2tf" in out and "--no-int8" in out
    assert not cache.exists() or not any(cache.iterdir()), "heavy work started for an impossible request"

"""The device side: toolkit and restnet-bench in a venv without torch, tamper checks, feedback into packing.

The torch-free checks run in .venv-device (Python 3.12, requirements/device.txt,
made by scripts/setup.sh): torch is not even installed there.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import TINY_PACK, restnet_cache

from restnet.cli import main
from restnet.export.pte import device_loader
from restnet.timing import busy_cores, torch_threads
from toolkit.package import PackageError, read_manifest
from toolkit.switcher import Package, Switcher

ROOT = Path(__file__).resolve().parents[1]
DEVICE_PY = ROOT / ".venv-device" / "bin" / "python"

needs_device_venv = pytest.mark.skipif(not DEVICE_PY.exists(), reason="no .venv-device (needs Python 3.12; "
                                                                      "scripts/setup.sh makes it)")


def _device(args: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(ROOT)  # the toolkit from this checkout, nothing else of restnet
    res = subprocess.run([str(DEVICE_PY), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stdout + res.stderr
    return res


# The selection under load is checked on packs of its own; the per-block probes (92 probes in 75 .pte
# exports, most of a pack's time) and the anchors' files take no part in it, so those packs leave them out. The
# probes' pack ships 2 calibration programs, not 8: with both anchors, the four whole programs the prediction's
# three corrections need (each calibration program is a whole export, ~20 s).
_TINY_HOST = ["pack", "--profile", "host", *TINY_PACK, "--budgets-between", "2"]
SELECTION_PACK = [*_TINY_HOST, "--no-anchors"]
HOST_PACK = [*_TINY_HOST, "--probes", "--calibration-points", "2"]


@pytest.fixture(scope="module")
def host_pkg(tmp_path_factory):
    """A host-profile package (pte, with per-block probes, --metric latency) from tiny random-weight anchors.
    A pack under a CPU-bound process on every core is the under-load test's own: under
    that load every 2-thread stage of this one (training, exports, the probes) ran 5-20 times slower, and the
    fixture took 535 s to over 900 s."""
    out = tmp_path_factory.mktemp("artifacts") / "host"
    with restnet_cache(tmp_path_factory.mktemp("cache")):
        res = CliRunner().invoke(main, [*HOST_PACK, "--out", str(out)], catch_exceptions=False)
        assert res.exit_code == 0, res.output
        yield out


def _readme_example(package: Path) -> str:
    text = (ROOT / "README.md").read_text()
    code = re.search(r"<!-- toolkit-example -->\s*```python\n(.*?)```", text, re.S).group(1)
    return code.replace("artifacts/host", str(package))


@pytest.mark.slow
@needs_device_venv
def test_readme_example_runs_without_torch(host_pkg):
    """The README's toolkit example, verbatim, in a venv where torch is not installed."""
    code = _readme_example(host_pkg) + (
        "\nimport sys, importlib.util\n"
        "assert 'torch' not in sys.modules and importlib.util.find_spec('torch') is None\n"
        "print('TORCH-FREE OK', sw.active, pkg.loads)\n")
    out = _device(["-c", code]).stdout
    assert "TORCH-FREE OK" in out
    m = json.loads((host_pkg / "manifest.json").read_text())
    ids = {v["id"] for v in m["variants"]}
    active_lines = [ln for ln in out.splitlines() if ln.startswith("active:")]
    assert len(active_lines) >= 2 and all(ln.split()[1] in ids for ln in active_lines)


@pytest.mark.slow
def test_switcher_picks_by_budget_and_never_reloads(host_pkg):
    pkg = Package(host_pkg, pte_fallback=device_loader)
    by_ms = sorted(pkg.variants, key=lambda v: pkg.latency_ms(v)[0])
    fastest, slowest = by_ms[0], by_ms[-1]
    budget = pkg.latency_ms(fastest)[0]
    sw = Switcher(pkg, latency_ms=budget)
    assert sw.within_budget and pkg.latency_ms(pkg.variant(sw.active))[0] <= budget
    sw.set_budget(latency_ms=1e9)
    best = max(pkg.variants, key=lambda v: v["accuracy"])
    assert pkg.variant(sw.active)["accuracy"] == best["accuracy"]
    loads = pkg.loads
    sw.set_budget(latency_ms=pkg.latency_ms(fastest)[0])
    sw.set_budget(latency_ms=1e9)
    assert pkg.loads == loads, "switching back to a held variant reloaded it"
    sw.set_budget(latency_ms=pkg.latency_ms(fastest)[0] / 100)
    assert not sw.within_budget and sw.active == fastest["id"]
    sw.set_budget(ram_mb=min(v["peak_ram_mb"] for v in pkg.variants))
    assert pkg.variant(sw.active)["peak_ram_mb"] == min(v["peak_ram_mb"] for v in pkg.variants)
    # A budget exactly at the slowest variant's latency admits every variant (the bound is inclusive),
    # so the pick is the most accurate of all, ties going to the faster one.
    ceiling = pkg.latency_ms(slowest)[0]
    assert [v["id"] for v in sw.candidates(ceiling, None)] == [v["id"] for v in pkg.variants]
    sw.set_budget(latency_ms=ceiling)
    assert sw.within_budget
    assert sw.active == max(pkg.variants, key=lambda v: (pkg.accuracy(v), -pkg.latency_ms(v)[0]))["id"]


@pytest.mark.slow
@needs_device_venv
def test_bench_then_pack_with_the_table_marks_latencies_measured(host_pkg, tmp_path):
    table_path = tmp_path / "latency-table.json"
    res = _device(["-m", "toolkit.bench", str(host_pkg), "--runs", "5", "--warmup", "2", "--blocks", "--rounds", "2",
                   "--device", "test-host", "--out", str(table_path)])
    assert "latency table:" in res.stdout and "round 2/2" in res.stderr
    table = json.loads(table_path.read_text())
    m = json.loads((host_pkg / "manifest.json").read_text())
    assert set(table["variants"]) == {v["files"][0]["sha256"] for v in m["variants"]}
    assert set(table["blocks"]) == {p["name"] for p in m["probes"]}
    paths = [p["path"] for p in m["probes"]]  # a stage's repeated blocks share one file, each name is timed
    assert len(set(paths)) < len(paths) and all((host_pkg / p).is_file() for p in set(paths))
    assert table["runtime"].startswith("executorch-numpy-runtime")
    for r in [*table["variants"].values(), *table["blocks"].values()]:
        assert 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] and r["runtime"] == table["runtime"]
        assert len(r["round_p50_ms"]) == 2 and r["spread"] >= 0 and r["raw_spread"] >= 0
    assert all(r["peak_rss_mb"] > r["baseline_rss_mb"] > 0 for r in table["variants"].values())
    timing = table["timing"]  # the cheapest variant is the reference, timed in every round
    assert (table["minor"], timing["rounds"], timing["reference"]["id"]) == (1, 2, m["variants"][0]["id"])
    assert len(timing["reference"]["round_speed"]) == 2 and all(s > 0 for s in timing["reference"]["round_speed"])
    assert timing["reference"]["key"] in table["variants"] and 0 <= timing["spread"]
    table["timing"]["spread"] = 1.0  # as if the device had been too noisy: the pack must say so
    table_path.write_text(json.dumps(table))

    out = tmp_path / "host2"
    res = CliRunner().invoke(main, [*HOST_PACK, "--out", str(out), "--latency-table", str(table_path)],
                           catch_exceptions=False)
    assert res.exit_code == 0, res.output
    said = " ".join(res.output.split())  # the console wraps long lines where a path's length puts them
    assert "predicted (device table test-host" in said
    assert "fitted on 4 whole programs" in said  # both anchors, both calibration programs
    assert "FLAGGED: latencies spread +-100.0% over 2 rounds" in said
    m2 = json.loads((out / "manifest.json").read_text())
    assert (out / "latency-table.json").is_file()
    for v in m2["variants"]:
        dev = v["latency"][-1]
        sha = v["files"][0]["sha256"]
        if sha in table["variants"]:
            assert dev["source"] == "measured" and dev["where"] == "test-host"
            assert dev["ms"] == table["variants"][sha]["p50_ms"]
        else:
            assert dev["source"] == "predicted"


def _selections(log: str) -> list[tuple[str, str]]:
    """(stitch point, its 'budget ...' log line) per member of a pack's log, cheapest first."""
    return [(m.group(1), line) for line in log.splitlines() if (m := re.search(r"^budget [^:]+: (\S+) CKA", line))]


MEASURED = "budgets (ms, measured (host, sum of parts, 1 thread; tolerance +-"
TIMINGS = ("latency-tables", "anchor-pte-ms")  # the cache's host timings: the parts' table, the anchors' .pte figures
ESTIMATED = "budgets (ms, estimated (host too busy to time"


@pytest.mark.slow
@pytest.mark.quiet
def test_a_latency_pack_under_load_measures_and_selects_as_without_it(tmp_path_factory):
    """Packed under a CPU-bound process on every core, the latency costs are measured (the bursts another job
    starved are dropped, the eager parts timed on one thread), or, if yet more jobs leave too few clean bursts,
    estimated with one line that says which figure and why. Packed again without the load, with the same cache,
    the costs come from the table the loaded pack timed and the picks are the same; with timings of its own
    (a copy of the cache without them: the trained members and their files are reused where the picks agree),
    each member's stitch point is the same or one of the two logs calls the choice a close call within the
    costs' tolerance. Marked quiet: "without the load" must mean no other test beside it."""
    out, cache = tmp_path_factory.mktemp("loaded") / "host", tmp_path_factory.mktemp("cache")
    # One torch thread for the training stages, as OMP_NUM_THREADS=1 would give: at 2 threads beside a CPU-bound
    # process per core, every OpenMP barrier waits for a descheduled thread (the 2-thread stages ran 5-20x slower
    # than quiet). The latency figures take their threads from the pack itself
    # (part_timing.PROXY_THREADS, the profile's threads for the files), so this test checks the same either way.
    with restnet_cache(cache), torch_threads(1):
        with busy_cores():
            res = CliRunner().invoke(main, [*SELECTION_PACK, "--out", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    loaded = res.output
    m = json.loads((out / "manifest.json").read_text())
    assert m["schema_version"] == "1.7"
    if MEASURED not in loaded:
        said = " ".join(loaded.split())  # the console wraps long lines
        assert ESTIMATED in said and "timed bursts ran without waiting for a CPU" in said, loaded
        assert "another job holds the CPU (load average" in said and m["profile"]["cost_source"].startswith(
            "estimated (host too busy")
    for v in m["variants"]:  # each file timed clean, or said to be too busy to time: never a starved figure
        host = v["latency"][0]
        assert (host["source"], host.get("spread", 0) >= 0) == ("measured", True) or (
            host["source"] == "estimated" and "too busy to time this file" in host["method"]), host
    logs = {}
    own = tmp_path_factory.mktemp("own-timings") / "cache"
    shutil.copytree(cache, own, ignore=shutil.ignore_patterns(*TIMINGS))
    for name, where in (("same cache", cache), ("own cache", own)):
        with restnet_cache(where):
            res = CliRunner().invoke(main, [*SELECTION_PACK, "--out", str(tmp_path_factory.mktemp(name) / "p")],
                                     catch_exceptions=False)
        assert res.exit_code == 0, res.output
        logs[name] = res.output
    if MEASURED in loaded:  # a measured table is cached and ranks points the same way in every later pack
        assert "timed before, from the cache" in logs["same cache"]
        assert _selections(logs["same cache"]) == _selections(loaded)
    assert "timed before" not in logs["own cache"]
    a, b = _selections(loaded), _selections(logs["own cache"])
    assert a and b, loaded + logs["own cache"]
    if MEASURED not in loaded or MEASURED not in logs["own cache"]:
        return  # a MACs estimate ranks points otherwise, and says so
    if len(a) != len(b):
        assert any("close call" in line for _, line in a + b), (a, b)
    for (pa, la), (pb, lb) in zip(a, b):
        assert pa == pb or "close call" in la + lb, f"under load: {la}\nwithout: {lb}"


def _copy(pkg: Path, tmp_path: Path) -> tuple[Path, dict]:
    dst = tmp_path / "pkg"
    shutil.copytree(pkg, dst)
    return dst, json.loads((dst / "manifest.json").read_text())


@pytest.mark.slow
def test_one_tampered_byte_is_refused(host_pkg, tmp_path):
    pkg, m = _copy(host_pkg, tmp_path)
    f = pkg / m["variants"][0]["files"][0]["path"]
    b = bytearray(f.read_bytes())
    b[100] ^= 0x20
    f.write_bytes(bytes(b))
    with pytest.raises(PackageError, match=r"refusing to load: .*sha256"):
        Package(pkg)


@pytest.mark.slow
@pytest.mark.parametrize("bad", ["../outside.pte", "/etc/hostname", "variants/../../outside.pte"])
def test_manifest_paths_outside_the_package_are_refused(host_pkg, tmp_path, bad):
    pkg, m = _copy(host_pkg, tmp_path)
    (tmp_path / "outside.pte").write_bytes(b"x")
    m["variants"][0]["files"][0]["path"] = bad
    (pkg / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(PackageError, match="outside the package"):
        Package(pkg)


@pytest.mark.slow
def test_schema_violations_are_refused(host_pkg, tmp_path):
    pkg, m = _copy(host_pkg, tmp_path)
    m["variants"][0]["files"][0]["sha256"] = "not-a-hash"
    (pkg / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(PackageError, match=r"field 'variants/0/files/0/sha256'"):
        read_manifest(pkg)
    m["schema_version"] = "2.0"
    (pkg / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(PackageError, match="schema_version '2.0' is not supported"):
        read_manifest(pkg)


def test_quantised_tflite_edges_use_the_files_scale_and_zero_point():
    """A fully integer .tflite takes int8 pixels and gives int8 logits: q = round(x / s) + z, clipped;
    x = (q - z) * s. Float tensors pass through untouched."""
    import numpy as np

    from toolkit.runtime import _dequantizer, _quantizer

    detail = {"dtype": np.int8, "quantization": (0.5, 3)}
    q = _quantizer(detail)(np.array([1.0, -0.2, -70.0, 100.0], np.float32))
    assert q.dtype == np.int8 and q.tolist() == [5, 3, -128, 127]
    assert _dequantizer(detail)(np.array([5, 3, -128], np.int8)).tolist() == [1.0, 0.0, -65.5]
    f32 = {"dtype": np.float32, "quantization": (0.0, 0)}
    x = np.array([0.25, -1.5], np.float32)
    assert _quantizer(f32)(x).tolist() == x.tolist() and _dequantizer(f32)(x) is x


def test_the_firmware_readme_names_toolkit_calls_that_exist():
    """The package README tells firmware teams how to call the toolkit; every call it names must exist."""
    import inspect

    from restnet.package.firmware import LOADERS

    calls = re.findall(r"Package\(path\)\.(\w+)\(([^)]*)\)", LOADERS["pte"])
    assert calls
    for name, args in calls:
        method = getattr(Package, name, None)
        assert callable(method), name
        params = list(inspect.signature(method).parameters.values())[1:]  # without self
        required = [p for p in params if p.default is inspect.Parameter.empty]
        assert len(required) <= len(args.split(",")) <= len(params), f"Package.{name}({args}) does not fit {params}"


@pytest.mark.slow
@needs_device_venv
def test_crosscheck_against_the_eager_reference_without_torch(host_pkg, tmp_path):
    """pack stored every file's eager logits in the cache; gathered into one .npz, the torch-free
    crosscheck (what the aarch64 stand-in runs) passes every fp32 gate on this machine too."""
    import numpy as np

    from restnet.package import reference

    ref = tmp_path / "reference.npz"
    meta = reference.gather(host_pkg, ref)
    m = json.loads((host_pkg / "manifest.json").read_text())
    assert [mb["path"] for mb in meta["members"]] == [f["path"] for v in m["variants"] for f in v["files"]]
    assert meta["n"] == 48  # the whole (tiny) split; N_IMAGES in a real pack
    with np.load(ref) as z:
        assert z["inputs_0"].shape == (48, 3, 32, 32) and z["logits_0"].shape == (48, m["task"]["num_classes"])
    res = _device(["-m", "toolkit.crosscheck", str(host_pkg), str(ref), "--json", str(tmp_path / "r.json")])
    assert "RESULT: PASS" in res.stdout, res.stdout
    out = json.loads((tmp_path / "r.json").read_text())
    assert out["switcher_ok"] and all(r["gate"] for r in out["members"])
    assert max(out["preprocess_max_abs_diff"]) < 1e-5


@pytest.mark.slow
def test_a_reference_is_refused_for_a_file_without_one(host_pkg, tmp_path):
    from restnet.package import reference

    pkg, m = _copy(host_pkg, tmp_path)
    m["variants"][0]["files"][0]["sha256"] = "0" * 64
    (pkg / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(reference.ReferenceMissing, match="no eager reference for .* re-run the same restnet-pack"):
        reference.gather(pkg, tmp_path / "ref.npz")


@pytest.mark.slow
@needs_device_venv
def test_emulated_bench_tables_are_marked_and_never_device_latency(host_pkg, tmp_path, monkeypatch):
    from restnet.package.latency import LatencyTable, LatencyTableError

    table_path = tmp_path / "latency-table.json"
    env_code = ("import os, sys; os.environ['RESTNET_EMULATED'] = 'aarch64 (qemu-user)'; "
                "from toolkit.bench import main; sys.exit(main(sys.argv[1:]))")
    res = _device(["-c", env_code, str(host_pkg), "--runs", "2", "--warmup", "0", "--out", str(table_path)])
    assert "EMULATED (aarch64 (qemu-user))" in res.stdout
    table = json.loads(table_path.read_text())
    assert table["emulated"] is True and table["machine"] == "aarch64 (qemu-user)"
    with pytest.raises(LatencyTableError, match="measured under emulation .* not device latency"):
        LatencyTable(table_path)
    res = CliRunner().invoke(main, ["pack", "--profile", "host", "--out", str(tmp_path / "p"),
                                    "--latency-table", str(table_path), *TINY_PACK])
    assert res.exit_code != 0 and "measured under emulation" in res.output, res.output
    assert Package(host_pkg, table=table_path).table is None  # the switcher does not decide by it either

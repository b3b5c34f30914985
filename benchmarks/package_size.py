"""What a shared family file saves: sizes, switch time and RAM, one file per variant vs one for all.

Takes the same family packed twice, ``restnet-pack --profile P`` (one file per variant) and
``restnet-pack --profile P --bundle shared`` (one file, a method per variant), and prints:
sizes (every member's file, their total, the shared file, each anchor exported alone, and the ratio
shared / (front + back): the target is <= 1.05); the time to switch from the cheapest member to the
costliest (in the shared file: load the method and run it once; with separate files: load the other file
and run it once), each trial in a fresh process, the two kinds interleaved and repeated because this
host's timings move between processes (median, min and max are reported); and the peak RSS of a process
holding both members live. Torch-free, like a device:

  .venv-device/bin/python benchmarks/package_size.py artifacts/rpi4 artifacts/rpi4-shared [--repeats 10]
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import multiprocessing as mp
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from toolkit import runtime  # noqa: E402
from toolkit.bench import _rss_mb, measure_switch  # noqa: E402
from toolkit.package import open_verified, safe_path  # noqa: E402

MB = 2**20


def switch_files(paths: list[str], fmt: str, shape: list[int]) -> dict:
    """Two separate files in one process: the first loaded and run, then time loading the second and
    running it once; peak RSS with both held."""
    base = _rss_mb()
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    first = runtime.open_program(Path(paths[0]), fmt)
    first.method()(x)
    t = time.perf_counter()
    second = runtime.open_program(Path(paths[1]), fmt)
    second.method()(x)
    switch_ms = (time.perf_counter() - t) * 1e3
    return {"switch_ms": switch_ms, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "baseline_rss_mb": base, "runtime": first.runtime}


def sizes(files_pkg: Path, shared_pkg: Path) -> tuple[dict, list[dict]]:
    _, mf = open_verified(files_pkg)
    _, ms = open_verified(shared_pkg)
    if not ms.get("bundles"):
        raise SystemExit(f"{shared_pkg}: no shared file (pack it with --bundle shared)")
    if [v["id"] for v in mf["variants"]] != list(ms["bundles"][0]["methods"].values()):
        raise SystemExit(f"{files_pkg} and {shared_pkg} do not hold the same variants")
    anchors = {v["front"]["anchor"]: v["files"][0]["size"] for v in mf["variants"] if v["kind"] == "anchor"}
    front, back = (anchors.get(mf["anchors"][r]["name"]) for r in ("front", "back"))
    if front is None or back is None:
        raise SystemExit(f"{files_pkg}: both anchors must ship as variants (packed without --no-anchors)")
    rows = [{"member": v["id"], "kind": v["kind"], "file_mb": v["files"][0]["size"] / MB} for v in mf["variants"]]
    bundle = ms["bundles"][0]["size"]
    total = sum(v["files"][0]["size"] for v in mf["variants"])
    stitches = 4 * sum(v["trainable_params"] for v in mf["variants"] if v["kind"] == "stitched")  # fp32, in no anchor
    return {"members": len(rows), "per_member_total_mb": total / MB, "bundle_mb": bundle / MB,
            "front_alone_mb": front / MB, "back_alone_mb": back / MB, "stitch_layers_mb": stitches / MB,
            "bundle_over_front_back": bundle / (front + back),
            "bundle_over_front_back_stitches": bundle / (front + back + stitches),
            "bundle_over_per_member_total": bundle / total, "target": "bundle / (front + back) <= 1.05"}, rows


def switches(files_pkg: Path, shared_pkg: Path, repeats: int) -> dict:
    """Interleaved fresh-process trials: shared file (method switch) vs separate files (file load)."""
    _, mf = open_verified(files_pkg)
    _, ms = open_verified(shared_pkg)
    b = ms["bundles"][0]
    names = list(b["methods"])
    pair = [names[0], names[-1]]  # the cheapest member to the costliest
    paths = [str(safe_path(files_pkg, v["files"][0]["path"])) for v in (mf["variants"][0], mf["variants"][-1])]
    shape, fmt = ms["input"]["shape"], b["format"]
    out = {"shared": [], "files": []}
    ctx = mp.get_context("spawn")
    for _ in range(repeats):
        with cf.ProcessPoolExecutor(1, mp_context=ctx) as ex:
            out["shared"].append(ex.submit(measure_switch, str(safe_path(shared_pkg, b["path"])), fmt, pair,
                                           shape, "NCHW", 1, None).result())
        with cf.ProcessPoolExecutor(1, mp_context=ctx) as ex:
            out["files"].append(ex.submit(switch_files, paths, fmt, shape).result())
    summary = {"from": mf["variants"][0]["id"], "to": mf["variants"][-1]["id"], "repeats": repeats,
               "runtime": out["shared"][0]["runtime"]}
    for kind, trials in out.items():
        for key in ("switch_ms", "peak_rss_mb"):
            vals = [t[key] for t in trials]
            summary[f"{kind}_{key}"] = {"median": statistics.median(vals), "min": min(vals), "max": max(vals)}
    summary["shared_held_p50_ms"] = statistics.median(t["held_p50_ms"] for t in out["shared"])
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files_package", type=Path, help="restnet-pack --profile P (one file per variant)")
    ap.add_argument("shared_package", type=Path, help="restnet-pack --profile P --bundle shared")
    ap.add_argument("--repeats", type=int, default=10, help="fresh-process trials of each kind, interleaved")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    size, rows = sizes(a.files_package, a.shared_package)
    sw = switches(a.files_package, a.shared_package, a.repeats)
    print(f"{'member':34} {'kind':9} {'file MB':>8}")
    for r in rows:
        print(f"{r['member']:34} {r['kind']:9} {r['file_mb']:8.2f}")
    print(f"\nper-member files, total      {size['per_member_total_mb']:8.2f} MB ({size['members']} files)")
    print(f"shared file                  {size['bundle_mb']:8.2f} MB")
    print(f"front anchor alone           {size['front_alone_mb']:8.2f} MB")
    print(f"back anchor alone            {size['back_alone_mb']:8.2f} MB")
    print(f"stitching layers (fp32)      {size['stitch_layers_mb']:8.2f} MB (weights no anchor holds)")
    print(f"shared / (front + back)      {size['bundle_over_front_back']:8.3f}   (target <= 1.05)")
    print(f"shared / (front + back + stitching layers) {size['bundle_over_front_back_stitches']:.3f}")
    print(f"shared / per-member total    {size['bundle_over_per_member_total']:8.3f}")
    print(f"\nswitch {sw['from']} -> {sw['to']}, {sw['repeats']} fresh processes each, interleaved ({sw['runtime']}):")
    print(f"{'':44} {'median':>9} {'min':>9} {'max':>9}")
    labels = {"shared_switch_ms": "switch ms, shared file (method + 1 run)",
              "files_switch_ms": "switch ms, separate file (file + 1 run)",
              "shared_peak_rss_mb": "peak RSS MB, 2 live, shared file",
              "files_peak_rss_mb": "peak RSS MB, 2 live, separate files"}
    for key, label in labels.items():
        s = sw[key]
        print(f"{label:44} {s['median']:9.2f} {s['min']:9.2f} {s['max']:9.2f}")
    print(f"a held member in the shared file: one run, p50 {sw['shared_held_p50_ms']:.3f} ms")
    doc = {"benchmark": "package_size", "machine": platform.machine(), "sizes": size, "members": rows,
           "switch": sw}
    print(json.dumps(doc, indent=2))
    if a.json:
        Path(a.json).write_text(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()

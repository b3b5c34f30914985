"""restnet-bench PACKAGE: measure every variant (and, with --blocks, every probe) on this device.

Each measurement runs in a fresh process (so peak RSS is that variant's, not
the sum of everything loaded before it): load the verified file, warm up,
time N single-image runs, report p50/p90/p99 and peak RSS. The table goes to
``PACKAGE/latency-table.json`` (or --out), keyed by each file's sha256 so that
it stays valid for exactly the files it measured (a variant inside a shared
file: sha256 and method); `restnet-pack --latency-table FILE` feeds it back
into selection. A package made with ``--bundle shared`` also gets, per shared
file, one process that holds two members live (the cheapest and the costliest):
its peak RSS, and the time to switch to the second member (load its method and
run it once) and back. No torch anywhere.

Latencies (p50/p90/p99) do not come from those processes: one fresh process's
timings move by up to ~1.5x from the next one's on a shared host, so every file
is then timed in ``--rounds`` further fresh processes, interleaved with all the
others, each round normalised by its own speed (``toolkit.timing``); the
package's cheapest variant is the reference timed in every round. Each entry
records its spread over the rounds, and the table its overall ``timing``
(reference, rounds, spread).
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime as dt
import json
import multiprocessing as mp
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from toolkit.errors import DEBUG_ENV, UsageError, run_main
from toolkit.formats import LATENCY_TABLE_FORMAT, LATENCY_TABLE_MINOR, LATENCY_TABLE_NAME, LATENCY_TABLE_VERSION, \
    member_key, table_spread
from toolkit.runtime import Loader
from toolkit.timing import BURST, ROUNDS, example_input as _input, measure_rounds

RSS_RUNS = 5  # calls in a file's own process: enough for its peak RSS

# Set (e.g. to "aarch64 (qemu-user)") by scripts/aarch64-standin.sh: the table is then marked
# emulated, and restnet refuses it as device latency.
EMULATED_ENV = "RESTNET_EMULATED"


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measure(path: str, fmt: str, shape: list[int], layout: str, warmup: int, runs: int,
            threads: int | None, pte_fallback: Loader | None = None, method: str | None = None) -> dict:
    """One file (one method of it) in this process: latency percentiles and peak RSS (runs in a fresh
    worker; ``pte_fallback`` must be a module-level function, so that it reaches the worker by name)."""
    from toolkit import runtime

    base = _rss_mb()
    run, version = runtime.load(Path(path), fmt, threads, pte_fallback, method=method)
    x = _input(shape, layout)
    for _ in range(warmup):
        run(x)
    times = np.empty(runs)
    for k in range(runs):
        t = time.perf_counter()
        run(x)
        times[k] = (time.perf_counter() - t) * 1e3
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    p50, p90, p99 = np.percentile(times, [50, 90, 99])
    return {"p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99), "mean_ms": float(times.mean()),
            "runs": runs, "warmup": warmup, "peak_rss_mb": float(peak), "baseline_rss_mb": float(base),
            "runtime": version}


def measure_switch(path: str, fmt: str, methods: list[str], shape: list[int], layout: str, runs: int,
                   threads: int | None, pte_fallback: Loader | None = None) -> dict:
    """One shared file, two members live in this process: load the file and the first member, then time
    the switch to the second (load its method + one run) and back (a held method: one run); peak RSS with
    both held."""
    from toolkit import runtime

    base = _rss_mb()
    x = _input(shape, layout)
    t = time.perf_counter()
    program = runtime.open_program(Path(path), fmt, threads, pte_fallback)
    first = program.method(methods[0])
    first(x)
    open_ms = (time.perf_counter() - t) * 1e3
    t = time.perf_counter()
    program.method(methods[1])(x)
    switch_ms = (time.perf_counter() - t) * 1e3
    back = np.empty(runs)
    for k in range(runs):  # a held member: switching is one call
        t = time.perf_counter()
        program.method(methods[k % 2])(x)
        back[k] = (time.perf_counter() - t) * 1e3
    return {"methods": methods, "open_ms": open_ms, "switch_ms": switch_ms, "held_p50_ms": float(np.median(back)),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "baseline_rss_mb": base, "runtime": program.runtime}


def _jobs(pkg, args) -> list[tuple[str, str, dict]]:
    """(kind, key, job) for every variant (or the named ones) and, with --blocks, every probe."""
    from toolkit.package import safe_path

    m = pkg.manifest
    jobs = []
    wanted = set(args.variant or [])
    unknown = wanted - {v["id"] for v in m["variants"]}
    if unknown:
        raise UsageError(f"--variant: no variant {', '.join(sorted(unknown))} in {pkg.root}; its variants: "
                         f"{', '.join(v['id'] for v in m['variants'])}")
    for v in m["variants"]:
        if wanted and v["id"] not in wanted:
            continue
        shape = (v.get("input") or m["input"])["shape"]
        for dtype in sorted({f.get("dtype", "fp32") for f in v["files"]}):  # fp32, then int8 if shipped
            f = pkg.file_for(v, dtype)
            jobs.append(("variant", member_key(f), {
                "id": v["id"], "format": f["format"], "dtype": dtype, "method": f.get("method"),
                "path": str(safe_path(pkg.root, f["path"])), "shape": shape, "layout": f["input_layout"],
                "kind": v["kind"], "anchor": v["front"]["anchor"] if v["kind"] == "anchor" else None}))
    if args.blocks:
        probes = m.get("probes") or []
        if not probes:
            raise UsageError(f"--blocks: {pkg.root} carries no per-block probes; pack it with "
                             "`restnet-pack --probes`, or drop --blocks")
        for p in probes:
            jobs.append(("block", p["name"], {"id": p["name"], "format": p["format"], "shape": p["in_shape"],
                                              "path": str(safe_path(pkg.root, p["path"])), "layout": "NCHW",
                                              "sha256": p["sha256"]}))
    return jobs


def _reference(pkg, jobs: list[tuple[str, str, dict]]) -> tuple[int, dict]:
    """(index into the timed files, the reference's record): the package's cheapest variant, fp32 (variants
    are sorted by cost). Timed in every round even when ``--variant`` left it out of the table."""
    v = pkg.manifest["variants"][0]
    key = member_key(pkg.file_for(v, "fp32"))
    keys = [k for _, k, _ in jobs]
    return (keys.index(key) if key in keys else len(jobs)), {"key": key, "id": v["id"]}


def _rss(job: dict, threads: int, warmup: int, pte_fallback: Loader | None) -> dict:
    """A variant's file in its own fresh process, so that its peak RSS is its own (probes have none worth
    reporting: nobody ships a probe)."""
    with cf.ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as ex:
        res = ex.submit(measure, job["path"], job["format"], job["shape"], job["layout"], min(warmup, 3), RSS_RUNS,
                        threads, pte_fallback, job.get("method")).result()
    return {k: res[k] for k in ("peak_rss_mb", "baseline_rss_mb")}


def _timed(kind: str, job: dict, rss: dict, timed: dict, runs: int, runtime: str) -> dict:
    """One table entry: latency from the interleaved rounds, peak RSS (variants) from the file's own process."""
    entry = {"id": job["id"], "format": job["format"], **timed, "runs": runs, **rss, "runtime": runtime}
    if kind == "variant":
        return {**entry, "dtype": job["dtype"], "kind": job["kind"], "anchor": job["anchor"]}
    return {**entry, "sha256": job["sha256"]}


def _header(pkg, threads: int, device: str | None) -> dict:
    m = pkg.manifest
    emulated = os.environ.get(EMULATED_ENV, "")
    return {"format": LATENCY_TABLE_FORMAT, "version": LATENCY_TABLE_VERSION, "minor": LATENCY_TABLE_MINOR,
            "device": device or platform.node(), "machine": emulated or platform.machine(),
            "emulated": bool(emulated), "cpu_count": os.cpu_count(), "threads": threads,
            "created": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
            "package": {"profile": m["profile"]["name"], "created": m["created"],
                        "resolution": m["input"]["shape"][-1]},
            "variants": {}, "blocks": {}, "bundles": {}}


def run_bench(package: str | Path, variant=None, blocks: bool = False, runs: int = 50, warmup: int = 10,
              threads: int | None = None, device: str | None = None, out: str | Path | None = None,
              progress=print, pte_fallback: Loader | None = None, rounds: int = ROUNDS, trusted_keys=None,
              min_sequence: int | None = None) -> tuple[Path, dict]:
    """Measure and write the latency table; returns (path, table)."""
    from toolkit.switcher import Package

    pkg = Package(package, trusted_keys=trusted_keys, min_sequence=min_sequence)  # verifies everything first
    threads = threads or pkg.manifest["profile"]["threads"]
    jobs = _jobs(pkg, argparse.Namespace(variant=variant, blocks=blocks))
    table = _header(pkg, threads, device)
    rss = [_rss(job, threads, warmup, pte_fallback) if kind == "variant" else {} for kind, _, job in jobs]
    for k, ((kind, _, job), r) in enumerate(zip(jobs, rss), 1):
        if r:
            progress(f"[{k}/{len(jobs)}] {kind} {_label(job)}: peak RSS {r['peak_rss_mb']:.0f} MB")
    ref, ref_rec = _reference(pkg, jobs)
    files = [{**job, "threads": threads} for _, _, job in jobs]
    if ref == len(jobs):
        v = pkg.manifest["variants"][0]
        files.append(_jobs(pkg, argparse.Namespace(variant=[v["id"]], blocks=False))[0][2] | {"threads": threads})
    timed, timing = measure_rounds(files, ref, rounds, runs, BURST, warmup, pte_fallback, progress)
    table["runtime"] = timing.pop("runtime")
    for (kind, key, job), r, t in zip(jobs, rss, timed):
        table["variants" if kind == "variant" else "blocks"][key] = _timed(kind, job, r, t, runs, table["runtime"])
    table["timing"] = {**timing, "reference": {**ref_rec, **timing.pop("reference")},
                       **table_spread([*table["variants"].values(), *table["blocks"].values()])}
    table["bundles"] = _bundles(pkg, runs, threads, pte_fallback, progress) if not variant else {}
    path = Path(out) if out else pkg.root / LATENCY_TABLE_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(table, f, indent=2)
    os.replace(tmp, path)
    return path, table


def _bundles(pkg, runs: int, threads: int | None, pte_fallback: Loader | None, progress) -> dict:
    """Per shared file (sha256): two members held in one fresh process (see ``measure_switch``)."""
    from toolkit.package import safe_path

    out = {}
    for b in pkg.manifest.get("bundles") or []:
        names = list(b["methods"])
        if len(names) < 2:
            continue
        pair = [names[0], names[-1]]  # the cheapest and the costliest member
        ctx = mp.get_context("spawn")
        with cf.ProcessPoolExecutor(1, mp_context=ctx) as ex:
            res = ex.submit(measure_switch, str(safe_path(pkg.root, b["path"])), b["format"], pair,
                            pkg.manifest["input"]["shape"], "NCHW", runs, threads, pte_fallback).result()
        out[b["sha256"]] = {"path": b["path"], "size": b["size"], **res}
        progress(f"shared {b['path']}: open + first member {res['open_ms']:.1f} ms, switch to the second "
                 f"{res['switch_ms']:.1f} ms, held {res['held_p50_ms']:.3f} ms; peak RSS with both "
                 f"{res['peak_rss_mb']:.0f} MB")
    return out


def _label(entry: dict) -> str:
    """A variant's id, with its dtype when it is not fp32 (one variant may ship both)."""
    dtype = entry.get("dtype", "fp32")
    return entry["id"] if dtype == "fp32" else f"{entry['id']} ({dtype})"


def _print_table(table: dict) -> None:
    rows = [("variant", _label(v), v) for v in table["variants"].values()]
    rows += [("block", k, b) for k, b in table["blocks"].items()]
    w = max([len(r[1]) for r in rows] + [10])
    print(f"\n{'kind':8} {'id':{w}} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9} {'peak RSS':>9} spread")
    for kind, name, r in rows:
        rss = f"{r['peak_rss_mb']:7.0f}MB" if "peak_rss_mb" in r else f"{'-':>9}"
        print(f"{kind:8} {name:{w}} {r['p50_ms']:9.3f} {r['p90_ms']:9.3f} {r['p99_ms']:9.3f} {rss} "
              f"+-{100 * r.get('spread', 0):.1f}%")
    for b in table.get("bundles", {}).values():
        print(f"shared {b['path']} ({b['size'] / 2**20:.1f} MB), {' + '.join(b['methods'])} live: switch "
              f"{b['switch_ms']:.1f} ms (load method + run), held {b['held_p50_ms']:.3f} ms, peak RSS "
              f"{b['peak_rss_mb']:.0f} MB")
    print(f"runtime: {table.get('runtime', '?')}; threads {table['threads']}; device {table['device']}")
    if t := table.get("timing"):
        print(f"{t['rounds']} rounds of {t['runs']} runs, each normalised by its speed; reference "
              f"{t['reference']['id']} (p50 {t['reference']['p50_ms']:.3f} ms, "
              f"+-{100 * t['reference']['raw_spread']:.1f}% between processes); "
              f"table spread +-{100 * t['spread']:.1f}%" + ("" if t["trusted"] else
                                                           f": over +-{100 * t['spread_limit']:.0f}%, too noisy"))
    if table.get("emulated"):
        print(f"EMULATED ({table['machine']}): these timings say nothing about a device's latency; "
              "the table is marked so and restnet-pack refuses it")


def _time_files(a: argparse.Namespace, pte_fallback: Loader | None) -> dict:
    """--file mode: the files (and the reference) timed like a table's entries; {"timing", "files": path -> entry}."""
    shape = [int(v) for v in a.shape.split(",")]
    paths = list(dict.fromkeys(a.file))
    ref = a.reference or paths[0]
    if ref not in paths:
        paths.append(ref)
    files = [{"path": f, "format": a.format, "shape": shape, "layout": "NCHW", "threads": a.threads} for f in paths]
    timed, timing = measure_rounds(files, paths.index(ref), a.rounds, a.runs, BURST, a.warmup, pte_fallback,
                                   progress=lambda s: print(s, file=sys.stderr))
    timing["reference"]["path"] = ref
    return {"timing": {**timing, **table_spread(timed)}, "files": dict(zip(paths, timed))}


def main(argv: list[str] | None = None, pte_fallback: Loader | None = None) -> int:
    """``python -m toolkit.bench`` on a device; restnet's ``restnet-bench`` passes its .pte loader.
    Failures: one message and the exit code of their class (toolkit.errors), no traceback without --debug."""
    if argv is None:
        argv = sys.argv[1:]
    if "--debug" in argv:
        argv = [a for a in argv if a != "--debug"]
        os.environ[DEBUG_ENV] = "1"
    return run_main(lambda: _main(argv, pte_fallback), "restnet-bench")


def _main(argv: list[str], pte_fallback: Loader | None) -> int:
    ap = argparse.ArgumentParser(prog="restnet-bench", description=__doc__.splitlines()[0])
    ap.add_argument("package", nargs="?", help="Package folder (artifacts/<profile>).")
    ap.add_argument("--file", action="append", help="Instead of a package: time this file (repeatable; all take "
                                                     "--format and --shape; prints JSON).")
    ap.add_argument("--reference", default=None, help="With --file: the reference program timed in every round "
                                                      "(default: the first --file).")
    ap.add_argument("--format", default="pte", help="With --file: its format.")
    ap.add_argument("--shape", default="1,3,64,64", help="With --file: input shape (NCHW).")
    ap.add_argument("--rounds", type=int, default=ROUNDS, help=f"Fresh processes that time every file, "
                                                                f"interleaved (default {ROUNDS}).")
    ap.add_argument("--variant", action="append", help="Only this variant id (repeatable).")
    ap.add_argument("--blocks", action="store_true", help="Also measure the per-block probes (restnet-pack --probes).")
    ap.add_argument("--runs", type=int, default=50, help="Timed runs per file (default 50).")
    ap.add_argument("--warmup", type=int, default=10, help="Warm-up runs per file (default 10).")
    ap.add_argument("--threads", type=int, default=None, help="Runtime threads (default: the profile's).")
    ap.add_argument("--device", default=None, help="Device name recorded in the table (default: hostname).")
    ap.add_argument("--out", default=None, help="Table path (default: PACKAGE/latency-table.json).")
    ap.add_argument("--trusted-key", action="append", metavar="PUB",
                    help="Run the package only if this Ed25519 public key signed it (repeatable: any one suffices).")
    ap.add_argument("--min-sequence", type=int, default=None, metavar="N",
                    help="The sequence of the package installed on this device: refuse a lower one (rollback).")
    a = ap.parse_args(argv)
    if a.runs < 1 or a.warmup < 0 or a.rounds < 1:
        ap.error("--runs and --rounds must be >= 1 and --warmup >= 0")
    if a.file:
        print(json.dumps(_time_files(a, pte_fallback)))
        return 0
    if not a.package:
        ap.error("give a PACKAGE (or --file)")
    path, table = run_bench(a.package, a.variant, a.blocks, a.runs, a.warmup, a.threads, a.device, a.out,
                            progress=lambda s: print(s, file=sys.stderr), pte_fallback=pte_fallback,
                            rounds=a.rounds, trusted_keys=a.trusted_key, min_sequence=a.min_sequence)
    _print_table(table)
    print(f"latency table: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

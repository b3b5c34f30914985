"""Switching members: separate files against a shared bundle, in C++ (restnet-switch) and in Python (toolkit).

For one family packed twice, as one file per variant and as one ``--bundle shared`` file whose methods are
the variants, this times switching from the small anchor (A, lite0 for rpi4) to the large one (B, lite2):
B's load and first run with A already held. It also times B loaded alone in a fresh process, B with the
other four members held, and reads the peak RSS (VmHWM) with B alone and with every member loaded. In C++
each runs with XNNPACK's weight cache on (restnet-switch's default: a weight two methods share is packed
once) and off; the Python toolkit cannot set that option, so it runs with the runtime's default (off).

Every measurement is its own process (a load time is only honest from cold), the measurements are
interleaved, each repeated ``--repeats`` times; the table gives the median and the range, as the host
may be shared. The acceptance ratios (issue #34): bundle switch A→B <= 0.25 x loading B's separate file
(with A held, and from cold), bundle RSS with all members <= 1.3 x B's separate file alone.

  python benchmarks/firmware_switch.py [--files artifacts/rpi4] [--bundle artifacts/rpi4-shared] [--repeats 7]
                                       [--python .venv-device/bin/python] [--json out.json]

Both packages must hold the same family: make them with
  restnet-pack --profile rpi4 --out artifacts/rpi4
  restnet-pack --profile rpi4 --bundle shared --out artifacts/rpi4-shared
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CHILD = ROOT / "benchmarks" / "_switch_child.py"

# (name, the variants one process loads and first-runs, in order): the last step is what is timed (for
# "all members", every step: loading the whole family), the peak RSS is the process's. "all" is every
# member, the largest first (restnet::Package::preload's order); in "A→B, all held" B is already loaded,
# so its switch is one run.
SCENARIOS = [("B alone", "B"), ("A→B", "A,B"), ("others→B", "others,B"), ("all members", "all"),
             ("A→B, all held", "all,A,B")]


def anchors(manifest: dict) -> tuple[str, str]:
    """(small anchor, large anchor): the anchor variants, cheapest first."""
    a = sorted((v for v in manifest["variants"] if v.get("kind") == "anchor"), key=lambda v: v["cost"])
    if len(a) < 2:
        raise SystemExit("the package ships fewer than two anchors (packed with --no-anchors?): pass --switch A,B")
    return a[0]["id"], a[-1]["id"]


def ids_for(spec: str, a: str, b: str, every: list[str]) -> str:
    out = []
    for part in spec.split(","):
        out += {"A": [a], "B": [b], "others": [v for v in every if v != b], "all": ["all"]}[part]
    return ",".join(out)


def measure(cmd: list[str], env: dict | None = None) -> dict:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {res.returncode}: {res.stderr.strip()[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def spread(xs: list[float]) -> tuple[float, float, float]:
    return statistics.median(xs), min(xs), max(xs)


def timed_ms(name: str, doc: dict, part: str = "switch_ms") -> float:
    steps = doc["steps"] if name == "all members" else doc["steps"][-1:]
    if part == "load_ms":  # restnet-switch splits a load into the file's and the method's
        return sum(s.get("load_ms", s.get("file_ms", 0) + s.get("method_ms", 0)) for s in steps)
    return sum(s[part] for s in steps)


def missing(files: Path, bundle: Path, binary: Path) -> list[str]:
    todo = []
    if not (files / "manifest.json").is_file():
        todo.append(f".venv/bin/restnet-pack --profile rpi4 --out {files}")
    if not (bundle / "manifest.json").is_file():
        todo.append(f".venv/bin/restnet-pack --profile rpi4 --bundle shared --out {bundle}")
    if not binary.is_file():
        todo.append("bash scripts/firmware.sh")
    return todo


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", default=str(ROOT / "artifacts" / "rpi4"), help="the family, one file per variant")
    ap.add_argument("--bundle", default=str(ROOT / "artifacts" / "rpi4-shared"),
                    help="the same family as one --bundle shared file")
    ap.add_argument("--switch", help="A,B: variant ids to switch between [default: small anchor, large anchor]")
    ap.add_argument("--repeats", type=int, default=7, help="processes per measurement")
    ap.add_argument("--binary", default=str(ROOT / "build" / "firmware" / "restnet-switch"))
    device = ROOT / ".venv-device" / "bin" / "python"
    ap.add_argument("--python", default=str(device if device.is_file() else sys.executable),
                    help="interpreter for the toolkit side [default: .venv-device's, the torch-free device runtime]")
    ap.add_argument("--no-python", action="store_true", help="C++ only")
    ap.add_argument("--json", dest="out")
    args = ap.parse_args()
    files, bundle, binary = Path(args.files), Path(args.bundle), Path(args.binary)
    todo = missing(files, bundle, binary)
    if todo:
        raise SystemExit("firmware_switch needs, first:\n  " + "\n  ".join(todo))
    mf, mb = (json.loads((p / "manifest.json").read_text()) for p in (files, bundle))
    every = [v["id"] for v in mf["variants"]]
    if every != [v["id"] for v in mb["variants"]]:
        raise SystemExit(f"{files} and {bundle} hold different families (variant ids differ): pack both from one "
                         "checkout and cache")
    if not mb.get("bundles"):
        raise SystemExit(f"{bundle} is not a shared bundle (no 'bundles' in its manifest): pack it with --bundle shared")
    a, b = args.switch.split(",") if args.switch else anchors(mf)

    # (side, package, weight cache) -> the command that runs one process
    sides = {("C++", "files", "on"): [str(binary), str(files)],
             ("C++", "bundle", "on"): [str(binary), str(bundle)],
             ("C++", "files", "off"): [str(binary), str(files), "--no-weight-cache"],
             ("C++", "bundle", "off"): [str(binary), str(bundle), "--no-weight-cache"]}
    if not args.no_python:
        sides[("Python", "files", "default")] = [args.python, str(CHILD), str(files)]
        sides[("Python", "bundle", "default")] = [args.python, str(CHILD), str(bundle)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    got: dict[tuple, list[dict]] = {}
    runtimes = {}
    load0, t0 = os.getloadavg(), time.perf_counter()
    for r in range(args.repeats):
        for key, cmd in sides.items():  # interleaved: a burst of load on the host hits every row alike
            for name, spec in SCENARIOS:
                insert = 2 if key[0] == "C++" else 3  # restnet-switch PACKAGE IDS; python CHILD PACKAGE IDS
                doc = measure(cmd[:insert] + [ids_for(spec, a, b, every)] + cmd[insert:], env)
                if "runtime" in doc:
                    runtimes[key[0]] = doc["runtime"]
                got.setdefault((*key, name), []).append(doc)
        print(f"repeat {r + 1}/{args.repeats} done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)

    rows, med = [], {}
    for (side, pkg, cache, name), docs in got.items():
        ms = spread([timed_ms(name, d) for d in docs])
        hwm = spread([d["hwm_end_mb"] for d in docs])
        med[(side, pkg, cache, name)] = (ms[0], hwm[0])
        rows.append({"side": side, "package": pkg, "weight cache": cache, "measured": name,
                     "ms median": ms[0], "ms range": f"{ms[1]:.1f}-{ms[2]:.1f}",
                     "of which load": statistics.median(timed_ms(name, d, "load_ms") for d in docs),
                     "peak RSS MiB": hwm[0],
                     "RSS range": f"{hwm[1]:.1f}-{hwm[2]:.1f}", "RSS at end": statistics.median(d["rss_end_mb"] for d in docs),
                     "files loaded": docs[0]["files_loaded"], "n": len(docs)})
    # The same input must give the same logits from a separate file and from the bundle, on either side.
    diff = max(abs(x - y)
               for k in got if k[1] == "files"
               for d, e in zip(got[k], got[(k[0], "bundle", k[2], k[3])])
               for s, t in zip(d["steps"], e["steps"])
               for x, y in zip(s["logits"], t["logits"]))

    def ms(side, pkg, cache, name):
        return med[(side, pkg, cache, name)][0]

    def rss(side, pkg, cache, name):
        return med[(side, pkg, cache, name)][1]

    # The baseline is the separate file as restnet-run loaded it before the weight cache: cache off.
    switch = ms("C++", "bundle", "on", "A→B")
    summary = {
        "files": str(files), "bundle": str(bundle), "A": a, "B": b, "repeats": args.repeats,
        "runtimes": {"C++": f"restnet-switch, executorch {version('executorch')} wheel (XNNPACK)", **runtimes},
        "max_abs_logit_diff_files_vs_bundle": diff,
        "ratio_switch_vs_B_file_with_A_held": switch / ms("C++", "files", "off", "A→B"),
        "ratio_switch_vs_B_file_cold": switch / ms("C++", "files", "off", "B alone"),
        "ratio_held_switch_vs_B_file_cold": ms("C++", "bundle", "on", "A→B, all held") / ms("C++", "files", "off", "B alone"),
        "ratio_rss_all_vs_B_file": rss("C++", "bundle", "on", "all members") / rss("C++", "files", "off", "B alone"),
        "host": {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
                 "cpu_count": os.cpu_count(), "loadavg_start": load0, "loadavg_end": os.getloadavg()},
        "seconds": time.perf_counter() - t0,
    }
    summary["switch_within_0.25"] = summary["ratio_switch_vs_B_file_cold"] <= 0.25
    summary["rss_within_1.3"] = summary["ratio_rss_all_vs_B_file"] <= 1.3
    from _common import emit

    emit("firmware_switch", rows, summary, args.out)


if __name__ == "__main__":
    main()

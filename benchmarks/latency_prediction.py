"""How well per-block latencies predict whole stitched models (this host as the device).

1. `restnet-pack --profile host --probes --metric flops --epochs 0` on the default pair (anchors
   and CKA come from the cache of the main job; the stitches' weights do not
   change latency, so they stay least-squares-initialised);
2. `restnet-bench --blocks` on that package (torch-free venv if present): every
   probe and variant timed in several fresh processes, interleaved, each process
   normalised by its speed (the median over its programs, toolkit.timing);
3. predict every candidate stitch point from the table (restnet.package.latency:
   sum of parts, with a per-program overhead and a memory term fitted on the
   anchors and the package's calibration programs);
4. export a seeded sample of the other stitch points to .pte (cached: the file, never its
   timing) and time them the same way, together with the package's whole programs
   (variants and calibration programs); their figures are put on the table's level
   (x the median over those programs of table p50 / this run's p50);
5. print predicted vs measured, the share within +-10 % (target >= 90 %), the
   worst error, the table's spread and the whole models' spread.

  python benchmarks/latency_prediction.py [--sample 30] [--runs 50] [--rounds 5] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import emit

from restnet import cache
from restnet._compat import quiet_third_party
from restnet.export import get_format, pte
from restnet.package.latency import LatencyTable, predicted_cost_model
from restnet.package.probes import calibration_points
from restnet.paths import cache_dir
from restnet.pipeline import Experiment, Runner
from restnet.stitching import StitchedModel, StitchLayer, StitchPoint

ROOT = Path(__file__).resolve().parents[1]


def device_python() -> str:
    dev = ROOT / ".venv-device" / "bin" / "python"
    return str(dev) if dev.exists() else sys.executable


def bench(args: list[str]) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([device_python(), "-m", "toolkit.bench", *args], cwd=ROOT, env=env, capture_output=True,
                         text=True)
    if res.returncode:
        sys.exit(f"restnet-bench failed:\n{res.stdout}{res.stderr}")
    return res.stdout


def stitched_pte(runner: Runner, specs, p: StitchPoint, x: torch.Tensor) -> Path:
    """The stitch point as a .pte, exported once per architecture pair, point, size and exporter version."""
    key = cache.key_of(front=runner.exp.front, back=runner.exp.back, point=(p.i, p.j), res=x.shape[-1],
                            kernel=runner.exp.kernel_size, runtime=pte.runtime_version())
    path = cache_dir("latency-prediction") / f"{p.i}-{p.j}-{key}.pte"
    if not cache.intact(path):
        model = StitchedModel(runner.front_arch, runner.back_arch, p,
                              StitchLayer(specs.front_specs[p.i], specs.back_specs[p.j], runner.exp.kernel_size))
        with tempfile.TemporaryDirectory() as d:
            get_format("pte").export(model.eval(), x, Path(d) / "m.pte")
            data = (Path(d) / "m.pte").read_bytes()
        cache.seal(path, lambda f: f.write(data))
    return path


def whole_programs(pkg: Path, table: dict) -> dict[str, float]:
    """{file: its p50 in the table} for every whole program of the package: its fp32 variants (anchors and
    members) and its calibration programs (stitched.iII.jJJ), from 1.4 to 7 M parameters. Timed again beside
    the sample, they put it on the table's level whatever size of program the host's state favoured."""
    from toolkit.formats import member_key, stitched_point

    manifest = json.loads((pkg / "manifest.json").read_text())
    out = {}
    for v in manifest["variants"]:
        f = next(f for f in v["files"] if f.get("dtype", "fp32") == "fp32" and f["format"] == "pte")
        out[str(pkg / f["path"])] = table["variants"][member_key(f)]["p50_ms"]
    for p in manifest.get("probes") or []:
        if stitched_point(p["name"]) is not None:
            out[str(pkg / p["path"])] = table["blocks"][p["name"]]["p50_ms"]
    return out


def reference_file(pkg: Path, table: dict) -> Path:
    """The file of the table's reference program (a variant of the package)."""
    ref = table["timing"]["reference"]["id"]
    manifest = json.loads((pkg / "manifest.json").read_text())
    v = next(v for v in manifest["variants"] if v["id"] == ref)
    return pkg / v["files"][0]["path"]


def measure_table(a: argparse.Namespace, tmp: Path) -> tuple[Path, Path]:
    pkg = tmp / "host"
    # --metric flops: the family does not matter here, and selecting by eager host latency would make the
    # package (and its reference variant) depend on how busy the host was while packing.
    subprocess.run([str(Path(sys.executable).with_name("restnet-pack")), "--profile", "host", "--probes",
                    "--metric", "flops", "--epochs", "0", "--threads", str(a.threads), "--out", str(pkg)],
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    table_path = tmp / "table.json"
    bench([str(pkg), "--blocks", "--runs", str(a.runs), "--rounds", str(a.rounds), "--threads", str(a.threads),
           "--out", str(table_path)])
    return pkg, table_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sample", type=int, default=30)
    ap.add_argument("--runs", type=int, default=50, help="timed runs per program per round")
    ap.add_argument("--rounds", type=int, default=5, help="fresh processes per measurement")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    ap.add_argument("--keep", default=None, help="copy the table and the whole models' timings into this folder")
    a = ap.parse_args()
    quiet_third_party()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        pkg, table_path = measure_table(a, Path(tmp))
        table = LatencyTable(table_path)
        runner = Runner(Experiment(), log=lambda m: None)
        specs = runner.cost_model("params")
        cm = predicted_cost_model(table, specs, (runner.exp.front, runner.exp.back), runner.exp.resolution)
        points = [StitchPoint(i, j) for i in range(len(cm.front.blocks)) for j in range(len(cm.back.blocks))]
        fitted_on = set(calibration_points(specs))  # the prediction saw these whole: never judge it on them
        drawn = random.Random(a.seed).sample(points, a.sample + len(fitted_on))
        sample = sorted([p for p in drawn if p not in fitted_on][:a.sample])
        x = torch.zeros(1, 3, runner.exp.resolution, runner.exp.resolution)
        files = {p: stitched_pte(runner, specs, p, x) for p in sample}
        ref = reference_file(pkg, table.data)
        common = whole_programs(pkg, table.data)
        args = [a for f in [*files.values(), *common] for a in ("--file", str(f))]
        got = json.loads(bench([*args, "--reference", str(ref), "--shape", ",".join(map(str, x.shape)), "--runs",
                                str(a.runs), "--rounds", str(a.rounds), "--threads", str(a.threads)]).splitlines()[-1])
        if a.keep:
            Path(a.keep).mkdir(parents=True, exist_ok=True)
            (Path(a.keep) / "table.json").write_text(table_path.read_text())
            (Path(a.keep) / "whole.json").write_text(json.dumps({**got, "points": {str(files[p]): [p.i, p.j]
                                                                                  for p in sample}}))
    # The level: median over the package's whole programs (timed in both) of table p50 / this run's p50.
    level = float(statistics.median(t / got["files"][f]["p50_ms"] for f, t in common.items()))
    rows = []
    for p in sample:
        m = got["files"][str(files[p])]
        pred, meas = cm(p), m["p50_ms"] * level
        err = (pred - meas) / meas
        rows.append({"point": p.label("lite2", "lite0"), "predicted_ms": pred, "measured_ms": meas,
                     "raw_measured_ms": m["p50_ms"], "spread_pct": 100 * m["spread"], "error_pct": 100 * err,
                     "within_10pct": abs(err) <= 0.10})
    summarise(rows, a, table, got, cm, len(points), level, time.perf_counter() - t0)


def summarise(rows, a, table, got, cm, candidates, level, seconds) -> None:
    share = sum(r["within_10pct"] for r in rows) / len(rows)
    worst = max(rows, key=lambda r: abs(r["error_pct"]))
    timing = table.data["timing"]
    emit("Latency prediction from per-block probes vs whole-model measurement (this host as the device)", rows,
         {"candidates_predicted": candidates, "sampled": len(rows), "share_within_10pct": share,
          "worst_error_pct": worst["error_pct"], "worst_point": worst["point"],
          "mean_error_pct": sum(r["error_pct"] for r in rows) / len(rows),
          "table_spread_pct": 100 * timing["spread"], "table_trusted": timing["trusted"],
          "whole_spread_pct": 100 * got["timing"]["spread"],
          "reference_raw_spread_pct": {"table": 100 * timing["reference"]["raw_spread"],
                                       "whole": 100 * got["timing"]["reference"]["raw_spread"]},
          "reference_level_ratio": level, "overhead_model": cm.source, "runtime": table.data.get("runtime"),
          "rounds": a.rounds, "runs": a.runs, "threads": a.threads, "seconds": seconds, "target_share": 0.9}, a.json)
    print(f"share within ±10 %: {share:.0%} of {len(rows)} (target ≥ 90 %); worst error {worst['error_pct']:+.1f} % "
          f"({worst['point']}); table spread ±{100 * timing['spread']:.1f} %, whole models ±"
          f"{100 * got['timing']['spread']:.1f} %; {seconds:.0f} s")


if __name__ == "__main__":
    main()

"""How well per-block latencies predict whole stitched models (this host as the device).

1. `restnet-pack --profile host --probes --epochs 0` on the default pair (anchors
   and CKA come from the cache of the main job; the stitches' weights do not
   change latency, so they stay least-squares-initialised);
2. `restnet-bench --blocks` on that package (torch-free venv if present),
   which measures every probe and both anchors whole;
3. predict every candidate stitch point from the table (restnet.package.latency);
4. export a seeded sample of >= 10 stitch points to .pte and time each whole
   with the same harness; print predicted vs measured, the share within +-10 %
   (target >= 90 %) and the worst error.

  python benchmarks/latency_prediction.py [--sample 12] [--runs 100] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from _common import emit

from restnet._compat import quiet_third_party
from restnet.export import get_format
from restnet.package.latency import LatencyTable, predicted_cost_model
from restnet.pipeline import Experiment, Runner
from restnet.stitching import StitchedModel, StitchLayer, StitchPoint

ROOT = Path(__file__).resolve().parents[1]


def device_python() -> str:
    dev = ROOT / ".venv-device" / "bin" / "python"
    return str(dev) if dev.exists() else sys.executable


def bench(args: list[str]) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([device_python(), "-m", "toolkit.bench", *args], cwd=ROOT, env=env, capture_output=True,
                         text=True, check=True)
    return res.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sample", type=int, default=12)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    quiet_third_party()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pkg = tmp / "host"
        subprocess.run([str(Path(sys.executable).with_name("restnet-pack")), "--profile", "host", "--probes",
                        "--epochs", "0", "--threads", str(a.threads), "--out", str(pkg)], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)
        table_path = tmp / "table.json"
        bench([str(pkg), "--blocks", "--runs", str(a.runs), "--threads", str(a.threads), "--out", str(table_path)])
        table = LatencyTable(table_path)
        runner = Runner(Experiment(), log=lambda m: None)
        cm = predicted_cost_model(table, runner.cost_model("params"), (runner.exp.front, runner.exp.back),
                                  runner.exp.resolution)
        la, lb = len(cm.front.blocks), len(cm.back.blocks)
        points = [StitchPoint(i, j) for i in range(la) for j in range(lb)]
        rng = random.Random(a.seed)
        sample = rng.sample(points, a.sample)
        specs = runner.cost_model("params")
        rows = []
        x = torch.zeros(1, 3, runner.exp.resolution, runner.exp.resolution)
        for p in sorted(sample):
            model = StitchedModel(runner.front_arch, runner.back_arch, p,
                                  StitchLayer(specs.front_specs[p.i], specs.back_specs[p.j])).eval()
            path = tmp / f"p{p.i}-{p.j}.pte"
            get_format("pte").export(model, x, path)
            got = json.loads(bench(["--file", str(path), "--format", "pte", "--shape",
                                    ",".join(map(str, x.shape)), "--runs", str(a.runs), "--threads",
                                    str(a.threads)]).strip().splitlines()[-1])
            pred = cm(p)
            err = (pred - got["p50_ms"]) / got["p50_ms"]
            rows.append({"point": p.label("lite2", "lite0"), "predicted_ms": pred, "measured_ms": got["p50_ms"],
                         "error_pct": 100 * err, "within_10pct": abs(err) <= 0.10})
    share = sum(r["within_10pct"] for r in rows) / len(rows)
    worst = max(abs(r["error_pct"]) for r in rows)
    emit("Latency prediction from per-block probes vs whole-model measurement (this host as the device)", rows,
         {"candidates_predicted": len(points), "sampled": len(rows), "share_within_10pct": share,
          "worst_error_pct": worst, "overhead_model": cm.source, "runtime": table.data.get("runtime"),
          "threads": a.threads, "target_share": 0.9}, a.json)
    print(f"share within ±10 %: {share:.0%} of {len(rows)} (target ≥ 90 %); worst error {worst:.1f} %")


if __name__ == "__main__":
    main()

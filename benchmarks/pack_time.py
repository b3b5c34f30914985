"""Wall time of `restnet-pack --profile rpi4` cold (empty cache) and warm (same cache again).

Targets on this 2-core machine: cold <= 15 min, warm <= 2 min. Each run is a
fresh process, exactly what a user types; the cold run gets a brand-new
RESTNET_CACHE so nothing is reused (the pip-installed weights and the data
set are inputs, not cache).

  python benchmarks/pack_time.py [--profile rpi4] [--json out.json] [-- extra restnet-pack args]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import emit

ROOT = Path(__file__).resolve().parents[1]


def run(args: list[str], cache: Path, out: Path) -> float:
    env = {**os.environ, "RESTNET_CACHE": str(cache)}
    exe = Path(sys.executable).with_name("restnet-pack")
    t = time.perf_counter()
    subprocess.run([str(exe), *args, "--out", str(out)], env=env, check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="rpi4")
    ap.add_argument("--json", default=None)
    ap.add_argument("extra", nargs="*")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cache, out = Path(tmp) / "cache", Path(tmp) / a.profile
        args = ["--profile", a.profile, *a.extra]
        cold = run(args, cache, out)
        warm = run(args, cache, out)
    rows = [{"run": "cold (empty cache)", "seconds": cold, "target_s": 900.0, "ok": cold <= 900},
            {"run": "warm (cache from the cold run)", "seconds": warm, "target_s": 120.0, "ok": warm <= 120}]
    emit(f"restnet-pack --profile {a.profile} wall time", rows,
         {"profile": a.profile, "cold_s": cold, "warm_s": warm, "cpu_count": os.cpu_count()}, a.json)


if __name__ == "__main__":
    main()

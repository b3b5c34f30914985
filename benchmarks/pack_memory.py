"""Peak RSS of `restnet-pack`, in all and per stage, and how the stages grow with the data.

Each pack runs in a fresh process with a fresh RESTNET_CACHE (a cold pack: every stage computes). At
each stage's start the kernel's peak-RSS mark is reset (``/proc/self/clear_refs`` = 5, Linux), so a
stage's figure is its own peak, not the largest seen before it. With several ``--train-size`` values the
same pack runs once per size: a stage whose peak grows with the data holds it in memory.

  python benchmarks/pack_memory.py [--train-size 20000 ...] [--json out.json] [-- restnet-pack args]

Without restnet-pack args it packs the default rpi4 job (about 10 minutes cold on 2 cores).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import emit

ROOT = Path(__file__).resolve().parents[1]


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _child(args: list[str]) -> None:
    """Run one pack in this process with a StageClock that records each stage's own peak RSS."""
    sys.path.insert(0, str(ROOT))
    from restnet.cli import pack_main
    from restnet.package import build, eta

    stages: list[dict] = []

    class MemoryClock(eta.StageClock):
        @contextlib.contextmanager
        def __call__(self, name: str):
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset VmHWM: what follows is this stage's peak
            start = _status_mb("VmRSS")
            with super().__call__(name):
                yield
            stages.append({"stage": name, "start_rss_mb": start, "peak_rss_mb": _status_mb("VmHWM"),
                           "end_rss_mb": _status_mb("VmRSS")})

    build.StageClock = MemoryClock
    sys.argv = ["restnet-pack", *args]
    try:
        pack_main()
    except SystemExit as e:
        if e.code:
            raise
    finally:
        print("PACK_MEMORY " + json.dumps(stages), file=sys.stderr)


def _one(args: list[str], train_size: int | None) -> list[dict]:
    extra = ["--train-size", str(train_size)] if train_size else []
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "RESTNET_CACHE": str(Path(tmp) / "cache")}
        p = subprocess.run([sys.executable, __file__, "--child", "--", *args, *extra, "--out", str(Path(tmp) / "pkg")],
                           env=env, capture_output=True, text=True, cwd=ROOT)
    line = next((ln for ln in p.stderr.splitlines() if ln.startswith("PACK_MEMORY ")), None)
    if p.returncode or line is None:
        sys.exit(f"pack failed (exit {p.returncode}):\n{p.stderr[-3000:]}")
    return json.loads(line.removeprefix("PACK_MEMORY "))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-size", type=int, action="append", default=None,
                    help="Adaptation images (repeatable: one pack per size); default: the pack's own.")
    ap.add_argument("--json", default=None)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("pack_args", nargs="*")
    a = ap.parse_args()
    if a.child:
        _child(a.pack_args)
        return
    args = a.pack_args or ["--profile", "rpi4"]
    rows, runs = [], {}
    for size in a.train_size or [None]:
        stages = _one(args, size)
        runs[str(size or "default")] = stages
        for s in stages:
            rows.append({"train_size": size or "default", **s})
        rows.append({"train_size": size or "default", "stage": "whole pack", "start_rss_mb": stages[0]["start_rss_mb"],
                     "peak_rss_mb": max(s["peak_rss_mb"] for s in stages), "end_rss_mb": stages[-1]["end_rss_mb"]})
    emit("restnet-pack peak RSS per stage (MB = 2^20 bytes; each stage's own peak)", rows,
         {"pack_args": args, "cpu_count": os.cpu_count(), "runs": runs}, a.json)


if __name__ == "__main__":
    main()

"""Peak RSS of stitch-only training (Algorithm 2) against the number of training images.

The frozen front's features are computed once and read back every epoch. Each size runs in a fresh
process (random-weight anchors, synthetic images, one epoch, an early stitch point where the features
are largest), so the figure is that size's own peak: flat across sizes means nothing grows with the
data. The feature file's size is printed beside it: what an in-memory cache would have held.

    .venv/bin/python benchmarks/train_memory.py [--train-size 2048 --train-size 8192] [--resolution 64]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import _common


def _child(a: argparse.Namespace) -> None:
    from restnet.training.stitch import TrainConfig, train_stitched

    _common.setup_threads(a.threads)
    variant, task, spec = _common.synthetic_stitch(a.front, a.back, a.i, a.j, a.resolution, a.n, classes=10)
    model = variant()
    with tempfile.TemporaryDirectory() as tmp:
        feats = Path(tmp) / "front.npy"
        train_stitched(model, task, spec, TrainConfig(epochs=1, ls_init=False), Path(tmp) / "run", feats)
        size_mb = feats.stat().st_size / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("TRAIN_MEMORY " + json.dumps({"images": a.n, "feature_file_mb": size_mb, "peak_rss_mb": peak}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-size", type=int, action="append", default=None, help="repeatable (default 2048, 8192)")
    ap.add_argument("--front", default="tf_efficientnet_lite2")
    ap.add_argument("--back", default="tf_efficientnet_lite0")
    ap.add_argument("--i", type=int, default=0, help="front block (default 0: the largest features)")
    ap.add_argument("--j", type=int, default=0)
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", dest="out", default=None)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)  # child: one size
    a = ap.parse_args()
    if a.n:
        _child(a)
        return
    rows = []
    for n in a.train_size or [2048, 8192]:
        cmd = [sys.executable, __file__, "--n", str(n), "--front", a.front, "--back", a.back, "--i", str(a.i),
               "--j", str(a.j), "--resolution", str(a.resolution), "--threads", str(a.threads)]
        p = subprocess.run(cmd, capture_output=True, text=True)
        line = next((ln for ln in p.stdout.splitlines() if ln.startswith("TRAIN_MEMORY ")), None)
        if p.returncode or line is None:
            sys.exit(f"training {n} images failed (exit {p.returncode}):\n{p.stderr[-3000:]}")
        rows.append(json.loads(line.removeprefix("TRAIN_MEMORY ")))
    _common.emit(f"stitch-only training peak RSS, {a.front}[:{a.i + 1}] -> {a.back}[{a.j + 1}:] at {a.resolution} px "
                 "(MB = 2^20 bytes)", rows, {"config": {k: v for k, v in vars(a).items() if k != "n"}}, a.out)


if __name__ == "__main__":
    main()

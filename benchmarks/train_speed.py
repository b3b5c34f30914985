"""Stitch-only training (Algorithm 2, cached front features) against whole-model
training: epoch time for the same variant and data, measured in one run.

Target (issue #4): stitch-only epoch / whole-model epoch <= 0.3.

    .venv/bin/python benchmarks/train_speed.py [--train-size 1024 --resolution 64 --threads 2]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import _common

from restnet.training.stitch import TrainConfig, front_features, train_stitched


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--front", default="tf_efficientnet_lite2")
    ap.add_argument("--back", default="tf_efficientnet_lite0")
    ap.add_argument("--i", type=int, default=None, help="Front block (default: middle).")
    ap.add_argument("--j", type=int, default=None, help="Back block (default: middle).")
    ap.add_argument("--train-size", type=int, default=1024)
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", dest="out", default=None)
    args = ap.parse_args()
    env = _common.setup_threads(args.threads)
    variant, task, spec = _common.synthetic_stitch(args.front, args.back, args.i, args.j, args.resolution,
                                                   args.train_size, classes=1000)
    p = variant().point

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cache = tmp / "front.npy"
        t = time.perf_counter()
        front_features(variant(), task, spec, cache)
        t_feat = time.perf_counter() - t
        per_epoch = {}
        for strategy in ("stitch", "whole"):
            cfg = TrainConfig(strategy=strategy, epochs=args.epochs, batch_size=args.batch_size, ls_init=False)
            t = time.perf_counter()
            train_stitched(variant(), task, spec, cfg, tmp / strategy, cache)
            per_epoch[strategy] = (time.perf_counter() - t) / args.epochs
            rows.append({"strategy": strategy, "epochs": args.epochs, "seconds_per_epoch": per_epoch[strategy],
                         "trainable_params": sum(q.numel() for q in (variant().stitch if strategy == "stitch"
                                                                      else variant()).parameters())})
    ratio = per_epoch["stitch"] / per_epoch["whole"]
    summary = {"config": vars(args), "env": env, "point": p.label(args.front, args.back),
               "front_feature_extraction_seconds_once": t_feat,
               "stitch_over_whole_epoch": ratio, "target": 0.3}
    _common.emit("Stitch-only vs whole-model training", rows, summary, args.out)


if __name__ == "__main__":
    main()

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

import _common  # noqa: F401  (sets sys.path)
import numpy as np

from restnet.anchors import create_anchor
from restnet.anchors.stats import describe
from restnet.data import InputSpec, Split, Task
from restnet.stitching import StitchedModel, StitchLayer, StitchPoint, feature_spec
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
    a = create_anchor(args.front, pretrained=False)
    b = create_anchor(args.back, pretrained=False)
    sa, sb = describe(a, args.resolution), describe(b, args.resolution)
    p = StitchPoint(args.i if args.i is not None else a.num_blocks // 2,
                    args.j if args.j is not None else b.num_blocks // 2)
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (args.train_size, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 1000, args.train_size)
    task = Task("synthetic", [str(k) for k in range(1000)], Split(imgs, labels), Split(imgs[:8], labels[:8]))
    spec = InputSpec(args.resolution, (0.5,) * 3, (0.5,) * 3)

    def variant():
        return StitchedModel(a, b, p, StitchLayer(feature_spec(a, sa.blocks[p.i].out_shape),
                                                  feature_spec(b, sb.blocks[p.j].out_shape)))

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

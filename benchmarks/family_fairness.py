"""Do stitched members beat an anchor only because they were trained longer?

Every stitched member gets `epochs` of stitch training on top of the task
anchors. The fair control gives each anchor the very same extra training:
the anchor cut at block i and stitched to *itself* (A[:i+1] -> stitch ->
A[i+1:]), the stitch least-squares-initialised (the identity, up to
numerics) and trained with the member's TrainConfig on the member's
training images. Its test top-1 minus the anchor's is what the extra
training alone buys; a member's edge over an anchor beyond that is the
stitching's own.

    .venv/bin/python benchmarks/family_fairness.py                 # the pack's default experiment
    .venv/bin/python benchmarks/family_fairness.py --points 4,8,12

Scored on the report split (CIFAR-10: the official 10,000 test images).
"""
from __future__ import annotations

import argparse
import json

import _common

from restnet.pipeline import Experiment, Runner
from restnet.stitching import StitchedModel, StitchLayer, StitchPoint
from restnet.training.stitch import least_squares_init, train_stitched


def self_stitched(runner: Runner, role: str, i: int, cfg):
    """Anchor ``role`` cut after block i and stitched to itself, trained like a member."""
    from restnet.training import checkpoint
    from restnet.paths import cache_dir

    anchor = runner.front if role == "front" else runner.back
    specs = runner.cost_model("params").front_specs if role == "front" else runner.cost_model("params").back_specs
    stitch = StitchLayer(specs[i], specs[i], runner.exp.kernel_size)
    model = StitchedModel(anchor.model, anchor.model, StitchPoint(i, i), stitch)
    task = runner.stitch_task
    least_squares_init(model, anchor.model, task, anchor.spec, anchor.spec, seed=runner.exp.seed)
    key = checkpoint.key_of(anchor=anchor.key, i=i, data=task.fingerprint(), cfg=str(cfg), k=runner.exp.kernel_size)
    run_dir = cache_dir("self-stitch", f"{role}-i{i}-{key}")
    feats = cache_dir("front-features") / f"self-{role}-i{i}-{key}.npy"
    return train_stitched(model, task, anchor.spec, cfg, run_dir, feats).model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", default=None, help="comma-separated block indices i (default: the middle block)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", dest="out", default=None)
    args = ap.parse_args()
    env = _common.setup_threads(args.threads)
    runner = Runner(Experiment(), log=lambda m: print(m, flush=True))
    cfg = runner.train_config()
    rows = []
    for role in ("front", "back"):
        anchor = runner.front if role == "front" else runner.back
        base = runner.report_accuracy(anchor.model, anchor.spec)
        n = anchor.model.num_blocks
        points = [int(p) for p in args.points.split(",")] if args.points else [n // 2]
        for i in points:
            if not 0 <= i < n - 1:
                raise SystemExit(f"--points: block {i} is outside 0..{n - 2} for {anchor.model.name}")
            acc = runner.report_accuracy(self_stitched(runner, role, i, cfg), anchor.spec)
            rows.append({"anchor": anchor.model.name, "self-stitch after block": i, "anchor top-1 %": 100 * base,
                         "same extra training %": 100 * acc, "gain (points)": 100 * (acc - base)})
            print(json.dumps(rows[-1]), flush=True)
    _common.emit("family_fairness", rows, {"train_config": str(cfg), "stitch_train_size": len(runner.stitch_task.train),
                                           "scored_on": f"{runner.task.report_name}, {len(runner.task.report)} images",
                                           "env": env}, args.out)


if __name__ == "__main__":
    main()

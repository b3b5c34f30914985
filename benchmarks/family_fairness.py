"""Do stitched members beat an anchor only because they were trained longer?

The control of restnet.training.control (every pack computes it at the middle
block too): each anchor cut at block i, stitched to itself and trained with
the members' TrainConfig on the members' images. Its test top-1 minus the
anchor's is what the extra training alone buys; a member's edge over an
anchor beyond that is the stitching's own.

    .venv/bin/python benchmarks/family_fairness.py                 # the pack's default experiment
    .venv/bin/python benchmarks/family_fairness.py --points 4,8,12

Scored on the report split (CIFAR-10: the official 10,000 test images).
"""
from __future__ import annotations

import argparse
import json

import _common

from restnet.pipeline import Experiment, Runner
from restnet.training.control import middle_block, trained_alike


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
    specs = runner.cost_model("params")
    for role, block_specs in (("front", specs.front_specs), ("back", specs.back_specs)):
        anchor = runner.front if role == "front" else runner.back
        base = runner.report_accuracy(anchor.model, anchor.spec)
        points = [int(p) for p in args.points.split(",")] if args.points else [middle_block(anchor)]
        for i in points:
            try:
                control = trained_alike(role, anchor, block_specs, runner.stitch_task, cfg, runner.exp.kernel_size,
                                        runner.exp.seed, i)
            except ValueError as e:
                raise SystemExit(f"--points: {e}") from None
            acc = runner.report_accuracy(control.model, anchor.spec)
            rows.append({"anchor": anchor.model.name, "self-stitch after block": i, "anchor top-1 %": 100 * base,
                         "same extra training %": 100 * acc, "gain (points)": 100 * (acc - base)})
            print(json.dumps(rows[-1]), flush=True)
    _common.emit("family_fairness", rows, {"train_config": str(cfg), "stitch_train_size": len(runner.stitch_task.train),
                                           "scored_on": f"{runner.task.report_name}, {len(runner.task.report)} images",
                                           "env": env}, args.out)


if __name__ == "__main__":
    main()

"""How many images should the stitches train on? Members' top-1 for several stitch-training sizes.

Members are trained (or loaded from the cache) exactly as `restnet-pack` trains
them, on a seeded subset of the anchors' adaptation images, and scored on the
validation split by default: the split a setting is chosen on. The anchors are
scored beside them, since a member is only useful between its two anchors.

    .venv/bin/python benchmarks/stitch_size.py                       # 10,000 vs 15,000, the rpi4 points, val
    .venv/bin/python benchmarks/stitch_size.py --sizes 10000,20000 --point 3:2 --split test

A point is I:J (last front block kept : back block the stitch maps into), as in
`restnet select`; the defaults are the three points the rpi4 profile selects.
"""
from __future__ import annotations

import argparse
from dataclasses import replace

import _common

from restnet.pipeline import Experiment, Runner
from restnet.stitching.model import StitchPoint
from restnet.training.evaluate import accuracy

RPI4_POINTS = ("3:2", "9:7", "10:5")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,15000", help="stitch-training sizes, comma-separated")
    ap.add_argument("--point", action="append", default=None, help=f"I:J, repeatable [default: {' '.join(RPI4_POINTS)}]")
    ap.add_argument("--split", choices=("val", "test"), default="val")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", dest="out", default=None)
    a = ap.parse_args()
    env = _common.setup_threads(a.threads)
    points = [StitchPoint(*map(int, p.split(":"))) for p in a.point or RPI4_POINTS]
    rows: list[dict] = []
    for k, size in enumerate(int(s) for s in a.sizes.split(",")):
        r = Runner(replace(Experiment(), stitch_train_size=size), log=lambda *_: None)
        split = r.task.val if a.split == "val" else r.task.report
        if k == 0:
            for name, anchor in ((r.exp.back, r.back), (r.exp.front, r.front)):
                rows.append({"model": f"anchor {name}", "stitch_images": "-",
                             "top1_%": 100 * accuracy(anchor.model, r.task.loader(split, anchor.spec, 256), desc=name)})
        for p in points:
            model = r.train(p, r.train_config()).model.eval()
            rows.append({"model": p.label("front", "back"), "stitch_images": len(r.stitch_task.train),
                         "top1_%": 100 * accuracy(model, r.task.loader(split, r.front.spec, 256), desc=p.label())})
    _common.emit("stitch_size", rows, {"split": a.split, "images": len(split), "front": r.exp.front,
                                       "back": r.exp.back, "env": env}, a.out)


if __name__ == "__main__":
    main()

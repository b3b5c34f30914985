"""Does the default adaptation make the large anchor measurably better than the small one?

Issue #4 asks for adaptation defaults (resolution, epochs, data size) under
which the front (large) anchor beats the back (small) one on the task, inside
the main job's time budget: the two anchors are the two ends of the family.
For each setting this adapts both anchors (cached, the same code path as
`restnet-pack`), predicts the *whole* Fashion-MNIST test set (10,000 images)
and reports both accuracies, the adaptation seconds, and an exact McNemar test
on the paired predictions (the images one anchor gets right and the other
wrong), which is far tighter than comparing two accuracies with their own
standard errors.

    .venv/bin/python benchmarks/anchor_separation.py --setting 64:10000:1 --setting 32:60000:1

A setting is RESOLUTION:TRAIN_SIZE:EPOCHS (TRAIN_SIZE 0 = all 60,000).
"""
from __future__ import annotations

import argparse
import json
import math
import time

import _common  # noqa: F401  (sets sys.path)

from restnet.data import load_task
from restnet.training.adapt import AdaptConfig, adapt_anchor
from restnet.training.evaluate import predictions


def mcnemar_p(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: discordant pairs are Binomial(b + c, 1/2) under H0."""
    n, k = b + c, min(b, c)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def run_setting(front: str, back: str, res: int, train: int, epochs: int, seed: int) -> dict:
    task = load_task("fashion-mnist", train or None, None, seed, res)
    cfg = AdaptConfig(epochs=epochs, seed=seed)
    out: dict = {"resolution": res, "train_size": len(task.train), "epochs": epochs, "val_size": len(task.val),
                 "seed": seed}
    right = {}
    for role, name in (("front", front), ("back", back)):
        t = time.perf_counter()
        a = adapt_anchor(name, task, res, cfg)
        p, y = predictions(a.model, task.loader(task.val, a.spec, 256), desc=f"predict {name}")
        right[role] = (p == y)
        out[role] = {"name": name, "accuracy": float(right[role].float().mean()),
                     "adapt_seconds": round(a.seconds, 1), "wall_seconds": round(time.perf_counter() - t, 1)}
    b = int((right["front"] & ~right["back"]).sum())
    c = int((~right["front"] & right["back"]).sum())
    out.update(front_only=b, back_only=c, gap_points=100 * (out["front"]["accuracy"] - out["back"]["accuracy"]),
               mcnemar_p=mcnemar_p(b, c))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--front", default="tf_efficientnet_lite2")
    ap.add_argument("--back", default="tf_efficientnet_lite0")
    ap.add_argument("--setting", action="append", default=None,
                    help="RESOLUTION:TRAIN_SIZE:EPOCHS, repeatable (default: the pack default 64:10000:1).")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", dest="out", default=None)
    args = ap.parse_args()
    env = _common.setup_threads(args.threads)
    rows = []
    for s in args.setting or ["64:10000:1"]:
        res, train, epochs = (int(v) for v in s.split(":"))
        r = run_setting(args.front, args.back, res, train, epochs, args.seed)
        print(json.dumps(r), flush=True)
        rows.append({"setting": f"{res}px {r['train_size']} x{epochs}",
                     "front_acc_%": 100 * r["front"]["accuracy"], "back_acc_%": 100 * r["back"]["accuracy"],
                     "gap_points": r["gap_points"], "front_only": r["front_only"], "back_only": r["back_only"],
                     "mcnemar_p": r["mcnemar_p"],
                     "adapt_s": r["front"]["adapt_seconds"] + r["back"]["adapt_seconds"]})
    _common.emit("anchor_separation", rows, {"front": args.front, "back": args.back,
                                             "val": "Fashion-MNIST test, all 10,000", "env": env}, args.out)

if __name__ == "__main__":
    main()

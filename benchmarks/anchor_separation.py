"""Does the default adaptation make the large anchor measurably better than the small one?

The two anchors are the two ends of the family, so the front (large) anchor
must beat the back (small) one on the task. For each setting this adapts
both anchors (cached, the same code path as `restnet-pack`), predicts the
*whole* official test split (10,000 images for CIFAR-10 and Fashion-MNIST)
and reports both accuracies, the adaptation seconds, and an exact McNemar
test on the paired predictions (the images one anchor gets right and the
other wrong), which is far tighter than comparing two accuracies with their
own standard errors. Training never sees the test images; the adaptation
uses the training split minus the validation images carved from it.

    .venv/bin/python benchmarks/anchor_separation.py --data cifar10            # the pack's default setting
    .venv/bin/python benchmarks/anchor_separation.py --setting 64:20000:1 --setting 32:0:1

A setting is RESOLUTION:TRAIN_SIZE:EPOCHS[:LR] (TRAIN_SIZE 0 = every training image).
"""
from __future__ import annotations

import argparse
import json
import math
import time

import _common  # noqa: F401  (sets sys.path)

from restnet.data import load_task
from restnet.pipeline import Experiment
from restnet.training.adapt import AdaptConfig, adapt_anchor
from restnet.training.evaluate import predictions


def mcnemar_p(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: discordant pairs are Binomial(b + c, 1/2) under H0."""
    n, k = b + c, min(b, c)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def run_setting(data: str, front: str, back: str, res: int, train: int, epochs: int, seed: int,
                lr: float | None = None, augment: str = "none") -> dict:
    task = load_task(data, train or None, None, seed, res)
    cfg = AdaptConfig(epochs=epochs, seed=seed, augment=augment, **({"lr": lr} if lr else {}))
    out: dict = {"data": data, "resolution": res, "train_size": len(task.train), "epochs": epochs, "lr": cfg.lr, "augment": augment,
                 "test_size": len(task.report), "seed": seed}
    right = {}
    for role, name in (("front", front), ("back", back)):
        t = time.perf_counter()
        a = adapt_anchor(name, task, res, cfg)
        p, y = predictions(a.model, task.loader(task.report, a.spec, 256), desc=f"predict {name}")
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
    d = Experiment()
    ap.add_argument("--data", default=d.data, help=f"a built-in data set or an ImageFolder [default: {d.data}]")
    ap.add_argument("--front", default=d.front)
    ap.add_argument("--back", default=d.back)
    ap.add_argument("--setting", action="append", default=None,
                    help="RESOLUTION:TRAIN_SIZE:EPOCHS[:LR], repeatable [default: the pack's default, "
                         f"{d.resolution}:{d.train_size or 0}:{d.adapt.epochs}].")
    ap.add_argument("--augment", choices=("none", "flip"), default=d.adapt.augment)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", dest="out", default=None)
    args = ap.parse_args()
    env = _common.setup_threads(args.threads)
    rows = []
    for s in args.setting or [f"{d.resolution}:{d.train_size or 0}:{d.adapt.epochs}"]:
        res, train, epochs, *lr = s.split(":")
        r = run_setting(args.data, args.front, args.back, int(res), int(train), int(epochs), args.seed,
                        float(lr[0]) if lr else None, args.augment)
        print(json.dumps(r), flush=True)
        rows.append({"setting": f"{res}px {r['train_size']} x{epochs} lr {r['lr']:g} {args.augment}",
                     "front_acc_%": 100 * r["front"]["accuracy"], "back_acc_%": 100 * r["back"]["accuracy"],
                     "gap_points": r["gap_points"], "front_only": r["front_only"], "back_only": r["back_only"],
                     "mcnemar_p": r["mcnemar_p"],
                     "adapt_s": r["front"]["adapt_seconds"] + r["back"]["adapt_seconds"]})
    _common.emit("anchor_separation", rows, {"front": args.front, "back": args.back,
                                             "data": args.data,
                                             "scored_on": "the official test split, every image", "env": env}, args.out)

if __name__ == "__main__":
    main()

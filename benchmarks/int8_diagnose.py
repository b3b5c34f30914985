"""Where int8 loses agreement with fp32: simulated PT2E int8 (the converted program run by torch) per knob.

Every knob is measured on the validation images carved from the training split (the recipe is chosen
there; benchmarks/int8.py reports the chosen one on the test split from the real files). Calibration
images come from the training split without the validation images, as in a pack.

  .venv/bin/python benchmarks/int8_diagnose.py --package artifacts/rpi4 --images 2000 \
      --recipes base,clamp,clamp+c1024 --parts stem,stitch,head,dw --json out.json

A recipe is '+'-joined knobs: clamp (quantise the ReLU6 output, not the conv output before it),
c<N> (N calibration images), ft / ft<N> (fine-tune the weights through the quantisers on N images), obs=<hist|minmax|ma|pct> (activation observer), pt (per-tensor weights),
fp32=<part> (leave one part unquantised), only=<part> (quantise one part only).
Parts: stem, front, stitch, back, head, dw (depthwise convs), first (the first conv), classifier.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from _common import emit, setup_threads
from _int8_members import load_members

from restnet.data import to_model_input
from restnet.export import int8_recipe
from restnet.export.int8 import get_route, quantize


def inputs(task, split, spec, n: int | None = None, seed: int = 0) -> torch.Tensor:
    s = split.subset(n, seed) if n else split
    return torch.cat([to_model_input(imgs, spec) for imgs, _ in task.raw_loader(s, 250)])


@torch.no_grad()
def predict(model, x: torch.Tensor, batch: int = 250) -> np.ndarray:
    return torch.cat([model(x[k:k + batch]) for k in range(0, len(x), batch)]).argmax(-1).numpy()


def simulate(model, recipe: int8_recipe.Recipe, calib: torch.Tensor, tune: torch.Tensor | None = None
             ) -> torch.nn.Module:
    """The XNNPACK route's quantised program before lowering, made by the pack's own stages
    (restnet.export.int8.quantize: fine-tuned on ``tune`` when the recipe says so) and run by torch."""
    example = calib[:1] if recipe.batch1 else calib[:64]  # the route calibrates in slices of this batch
    return quantize(get_route("pte"), model, example, [calib], recipe, tune, log=print).program


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--package", type=Path, default=Path("artifacts/rpi4"))
    ap.add_argument("--images", type=int, default=2000, help="seeded validation images per measurement")
    ap.add_argument("--recipes", default="base,clamp")
    ap.add_argument("--members", default="", help="comma-separated member indices (default: all)")
    ap.add_argument("--split", default="val", choices=("val", "test"))
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    env = setup_threads(2)
    runner, members = load_members(a.package)
    if a.members:
        members = [members[int(i)] for i in a.members.split(",")]
    task = runner.task
    split = task.val if a.split == "val" else task.report
    rows = []
    for m in members:
        x = inputs(task, split, m.spec, a.images, 7)
        y = np.concatenate([lab.numpy() for _, lab in task.raw_loader(split.subset(a.images, 7), 250)])
        ref = predict(m.model, x)
        for name in a.recipes.split(","):
            r = int8_recipe.parse(name)
            calib = inputs(task, task.train, m.spec, r.calibration, runner.exp.seed + 17)
            t = time.perf_counter()
            tune = inputs(task, task.train, m.spec, r.finetune.images, runner.exp.seed + 29) \
                if r.finetune.images else None
            q = simulate(m.model, r, calib, tune)
            got = predict(q, x)
            rows.append({"member": m.name, "recipe": name, "n": len(x), "fp32_top1": float((ref == y).mean()),
                         "int8_top1": float((got == y).mean()), "agreement": float((got == ref).mean()),
                         "seconds": time.perf_counter() - t})
            print(rows[-1], flush=True)
    emit("int8_diagnose", rows, {"split": a.split, "images": a.images, **env}, a.json)


if __name__ == "__main__":
    main()

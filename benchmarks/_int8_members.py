"""A package's members rebuilt from restnet's caches (no training): what the int8 benchmarks quantise.
Also how those benchmarks run a shipped or lowered file over images (file_logits).

The package's manifest names each member's anchors and stitch point; the pipeline's Runner (the
pack's default Experiment at the manifest's resolution) loads the adapted anchors and the trained
stitch from ``$RESTNET_CACHE``. Each rebuilt member's test top-1 must equal the manifest's, so a
benchmark never measures another model than the one shipped; a member whose stitch is not cached is
refused instead of trained.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from restnet import cache
from restnet.data import InputSpec
from restnet.pipeline import Experiment, Runner
from restnet.stitching import StitchPoint


@dataclass
class Member:
    name: str  # the manifest's variant id
    kind: str  # stitched | anchor
    model: torch.nn.Module
    spec: InputSpec
    accuracy: float  # the manifest's test top-1


def load_members(package: Path) -> tuple[Runner, list[Member]]:
    m = json.loads((package / "manifest.json").read_text())
    a = m["anchors"]
    res = m["input"]["resize"]["size"][0]
    runner = Runner(replace(Experiment(), front=a["front"]["name"], back=a["back"]["name"], resolution=res),
                    log=lambda s: print(s, flush=True))
    cfg = runner.train_config()
    out = []
    for v in m["variants"]:
        if v["kind"] == "anchor":
            anchor = runner.front if v["front"]["anchor"] == a["front"]["name"] else runner.back
            model, spec = anchor.model.eval(), anchor.spec
        else:
            point = StitchPoint(v["front"]["blocks"][1], v["back"]["blocks"][0] - 1)
            if not (runner.variant_dir(point, cfg) / "checkpoint.pt").is_file():
                raise SystemExit(f"{v['id']}: its stitch is not in the cache ({runner.variant_dir(point, cfg)}); "
                                 f"pack {package} first")
            model, spec = runner.train(point, cfg).model.eval(), runner.front.spec
        got = runner.report_accuracy(model, spec, cache.state_digest(model))
        if round(got * 10000) != round(v["accuracy"] * 10000):
            raise SystemExit(f"{v['id']}: rebuilt from the cache it scores {got:.4%}, the manifest says "
                             f"{v['accuracy']:.4%}: not the shipped model")
        out.append(Member(v["id"], v["kind"], model, spec, v["accuracy"]))
    return runner, out


def file_logits(run, x: torch.Tensor, layout: str) -> np.ndarray:
    """A loaded file's logits for every image in ``x`` (NCHW), one at a time as a device runs it."""
    arr = x.numpy()
    if layout == "NHWC":
        arr = arr.transpose(0, 2, 3, 1)
    return np.concatenate([run(np.ascontiguousarray(arr[k:k + 1])) for k in range(len(arr))])

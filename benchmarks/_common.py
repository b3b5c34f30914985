"""Shared bits for benchmark scripts: thread setup, tables, JSON output."""
from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def setup_threads(threads: int) -> dict:
    torch.set_num_threads(threads)
    return {"threads": threads, "torch": torch.__version__, "cpu_count": os.cpu_count(),
            "machine": platform.machine(), "python": platform.python_version()}


def synthetic_stitch(front: str, back: str, i: int | None, j: int | None, resolution: int, n: int,
                     classes: int) -> tuple:
    """(stitched-model factory, task, input spec) on random-weight anchors and ``n`` random grayscale
    images: what the training benchmarks time and measure, with no data set or weights to fetch.
    ``i``/``j`` None: each anchor's middle block. Each factory call gives a fresh stitching layer."""
    import numpy as np

    from restnet.anchors import create_anchor
    from restnet.anchors.stats import describe
    from restnet.data import InputSpec, Split, Task
    from restnet.stitching import StitchedModel, StitchLayer, StitchPoint, feature_spec

    a, b = create_anchor(front, pretrained=False), create_anchor(back, pretrained=False)
    sa, sb = describe(a, resolution), describe(b, resolution)
    p = StitchPoint(a.num_blocks // 2 if i is None else i, b.num_blocks // 2 if j is None else j)
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, classes, n)
    task = Task("synthetic", [str(k) for k in range(classes)], Split(imgs, labels), Split(imgs[:8], labels[:8]))

    def variant() -> StitchedModel:
        return StitchedModel(a, b, p, StitchLayer(feature_spec(a, sa.blocks[p.i].out_shape),
                                                  feature_spec(b, sb.blocks[p.j].out_shape)))

    return variant, task, InputSpec(resolution, (0.5,) * 3, (0.5,) * 3)


def emit(name: str, rows: list[dict], summary: dict, out: str | None) -> None:
    """Print a table and a JSON document (also written to ``out`` if given)."""
    from rich.console import Console
    from rich.table import Table

    if rows:
        t = Table(title=name)
        for k in rows[0]:
            t.add_column(k)
        for r in rows:
            t.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in r.values()])
        Console(width=140).print(t)
    doc = {"benchmark": name, "rows": rows, **summary}
    text = json.dumps(doc, indent=2)
    print(text)
    if out:
        Path(out).write_text(text)

"""Beyond the paper: a budget's top CKA candidates, reranked by how well their stitch works untrained.

CKA and stitchability can disagree (Bansal et al. 2021); the accuracy of a least-squares-initialised
stitch on a few hundred validation images checks cheaply, before any training.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from restnet.data import InputSpec, Task
from restnet.selection import Selection
from restnet.stitching import StitchPoint
from restnet.training.evaluate import accuracy


def rerank_by_probe(candidates: list[Selection], build: Callable[[StitchPoint], torch.nn.Module], task: Task,
                    spec: InputSpec, n: int, seed: int) -> list[tuple[Selection, float]]:
    """Each candidate with its built (least-squares) stitch's top-1 on ``n`` seeded validation images;
    best first, higher CKA first among equals."""
    probe = task.val.subset(n, seed + 13)
    scored = []
    for s in candidates:
        model = build(s.point)
        scored.append((s, accuracy(model, task.loader(probe, spec, 128), desc=f"rerank {s.point.label()}")))
    return sorted(scored, key=lambda t: (-t[1], -t[0].cka))

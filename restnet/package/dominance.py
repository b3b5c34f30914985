"""Members a cheaper member beats, dropped before export; decided on validation images.

A stitched member that costs more than another member and is less accurate
is no use at any budget: every device that could run it does better with the
cheaper one. Greedy selection by CKA can still pick one (a deep stitch at a
high CKA that trains poorly, e.g. pixel-7's top rung). The test is McNemar's
exact test on the validation images the two members disagree on, one-sided
(the costlier member is worse), at ``ALPHA`` after a Bonferroni correction
over the cheaper members it is compared with: a few images of noise never
drop a member, and a small validation split drops nothing. Only kept members
can drop another, and anchors are never dropped: they fix the family's range.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest

ALPHA = 0.01


@dataclass(frozen=True)
class Dominated:
    """Member ``index`` dropped because member ``by``, cheaper, is more accurate on validation."""

    index: int
    by: int
    p: float  # McNemar's exact one-sided p-value
    accuracy: float  # validation top-1 of the dropped member
    by_accuracy: float


def dominated(costs: list[float], correct: list[np.ndarray], droppable: list[bool],
              alpha: float = ALPHA) -> list[Dominated]:
    """The members to drop, in cost order. ``correct[i]`` is member i's per-image correctness on the
    validation images (the same images, in the same order, for every member)."""
    if not (len(costs) == len(correct) == len(droppable)):
        raise ValueError("costs, correct and droppable must have one entry per member")
    kept: list[int] = []
    drops: list[Dominated] = []
    for i in sorted(range(len(costs)), key=lambda k: costs[k]):
        cheaper = [j for j in kept if costs[j] < costs[i]]
        worst = _strongest(i, cheaper, correct, alpha) if droppable[i] and cheaper else None
        if worst is None:
            kept.append(i)
        else:
            drops.append(worst)
    return drops


def _strongest(i: int, cheaper: list[int], correct: list[np.ndarray], alpha: float) -> Dominated | None:
    """The cheaper member that beats member i most significantly, if any beats it at alpha / len(cheaper)."""
    best = None
    for j in cheaper:
        only_j = int(np.sum(correct[j] & ~correct[i]))  # images j gets right and i wrong
        only_i = int(np.sum(~correct[j] & correct[i]))
        if only_j + only_i == 0:
            continue
        p = float(binomtest(only_j, only_j + only_i, 0.5, alternative="greater").pvalue)
        if p < alpha / len(cheaper) and (best is None or p < best.p):
            best = Dominated(i, j, p, float(correct[i].mean()), float(correct[j].mean()))
    return best

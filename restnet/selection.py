"""Algorithm 1: pick the stitch point with the highest CKA whose cost fits a budget.

Written as the paper states it: take argmax M; accept if cost(i, j) <= budget;
otherwise set M[i, j] = -inf and repeat. A list of budgets gives a family;
budgets that land on the same point give one variant.

Beyond the paper, two floors (0 = off, the paper) also mask points that are
too cheap for the budget. Why: early stitch points have the highest CKA
(measured: lite2[:2]->lite0[2:] at CKA 0.995 on Fashion-MNIST), so every
budget above their cost selects them and the "family" crowds at the cheap
end. ``band`` masks points cheaper than band * budget. ``window`` masks points
cheaper than budget - window * spacing, where spacing is the distance to the
next lower budget (or to ``low``, the cheaper anchor's cost): each member then
lies in its own slice of the cost range, so with budgets evenly spaced between
the anchors no two consecutive members are more than (1 + window) spacings
apart, whatever CKA prefers.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from restnet.stitching import StitchPoint
from toolkit.errors import ProfileInvalid


class InfeasibleBudget(ProfileInvalid, ValueError):
    """No stitch point fits the budget; the message names the cheapest one."""


@dataclass(frozen=True)
class Selection:
    budget: float
    point: StitchPoint
    cka: float
    cost: float
    tried: int  # how many points were masked before this one was accepted


def select(matrix: torch.Tensor, cost: Callable[[StitchPoint], float], budget: float,
           unit: str = "", names: tuple[str, str] = ("front", "back"), band: float = 0.0,
           floor: float | None = None) -> Selection:
    """Algorithm 1 for one budget; only points costing >= max(band * budget, floor) are accepted."""
    if budget <= 0:
        raise InfeasibleBudget(f"budget must be positive, got {budget}")
    if not 0.0 <= band < 1.0:
        raise ValueError(f"band must be in [0, 1), got {band}")
    lowest = max(band * budget, floor if floor is not None else 0.0)
    m = matrix.clone().to(torch.float64)
    m[torch.isnan(m)] = float("-inf")
    tried = 0
    while True:
        flat = int(torch.argmax(m))
        i, j = divmod(flat, m.shape[1])
        if m[i, j] == float("-inf"):
            cheapest = min((StitchPoint(a, b) for a in range(m.shape[0]) for b in range(m.shape[1])), key=cost)
            within = f" with cost >= {lowest:g} {unit}" if lowest > 0 else ""
            raise InfeasibleBudget(
                f"no stitch point fits the budget {budget:g} {unit}{within}; the cheapest possible variant is "
                f"{cheapest.label(*names)} at {cost(cheapest):g} {unit}")
        p = StitchPoint(i, j)
        c = cost(p)
        if lowest <= c <= budget:
            return Selection(budget, p, float(matrix[i, j]), c, tried)
        m[i, j] = float("-inf")
        tried += 1


def top_feasible(matrix: torch.Tensor, cost: Callable[[StitchPoint], float], budget: float, k: int,
                 unit: str = "", names: tuple[str, str] = ("front", "back"), band: float = 0.0,
                 floor: float | None = None) -> list[Selection]:
    """The first k points Algorithm 1 would accept if each accepted one were masked in turn."""
    m = matrix.clone().to(torch.float64)
    out: list[Selection] = []
    for _ in range(k):
        try:
            s = select(m, cost, budget, unit, names, band, floor)
        except InfeasibleBudget:
            if not out:
                raise
            break
        out.append(Selection(s.budget, s.point, float(matrix[s.point.i, s.point.j]), s.cost, s.tried))
        m[s.point.i, s.point.j] = float("-inf")
    return out


def window_floors(budgets: Sequence[float], window: float, low: float | None = None) -> list[float | None]:
    """Per sorted budget: budget - window * (distance to the previous budget, or to ``low`` for the first)."""
    if not 0.0 <= window <= 1.0:
        raise ValueError(f"window must be in [0, 1], got {window}")
    bs = sorted(budgets)
    if not window:
        return [None] * len(bs)
    prev = [low] + bs[:-1]
    if low is None:
        prev[0] = bs[0] - (bs[1] - bs[0]) if len(bs) > 1 else 0.0
    return [b - window * (b - p) for b, p in zip(bs, prev)]


def select_family(matrix: torch.Tensor, cost: Callable[[StitchPoint], float], budgets: Sequence[float],
                  unit: str = "", names: tuple[str, str] = ("front", "back"), band: float = 0.0,
                  window: float = 0.0, low: float | None = None) -> list[Selection]:
    """One selection per budget, duplicates (same point) removed, sorted by cost."""
    if not budgets:
        raise ValueError("at least one budget is needed")
    seen: dict[StitchPoint, Selection] = {}
    for b, floor in zip(sorted(budgets), window_floors(budgets, window, low)):
        s = select(matrix, cost, b, unit, names, band, floor)
        seen.setdefault(s.point, s)
    return sorted(seen.values(), key=lambda s: (s.cost, s.point))


def budgets_between(low: float, high: float, n: int) -> list[float]:
    """n budgets evenly spaced strictly between two anchors' costs."""
    if n < 1:
        raise ValueError("n must be >= 1")
    lo, hi = min(low, high), max(low, high)
    return [lo + (hi - lo) * (k + 1) / (n + 1) for k in range(n)]

"""Algorithm 1: pick the stitch point with the highest CKA whose cost fits a budget.

Written as the paper states it: take argmax M; accept if cost(i, j) <= budget;
otherwise set M[i, j] = -inf and repeat. A list of budgets gives a family;
budgets that land on the same point give one variant.

Beyond the paper, rules (restnet.constraints: band, window, device limits) narrow which points a
budget may take; they come as one list, built once from the settings, and Algorithm 1 with no rules
is the paper's. A lower bound (band, window) only spreads the family over the cost range, so a budget
whose bounds hold no point takes the dearest point under its upper bound instead of failing: which
points a slice holds depends on measured costs (a device's latency table), and the family the bounds
were meant to spread still gets a member near that budget. Only a budget no point fits at all is an
error.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch

from restnet.constraints import Constraint, Span, masked, span_of, spans
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
    below: bool = False  # its bounds held no point: the dearest point under its upper bound instead


def select(matrix: torch.Tensor, cost: Callable[[StitchPoint], float], budget: float, unit: str = "",
           names: tuple[str, str] = ("front", "back"), constraints: Sequence[Constraint] = (),
           among: Sequence[float] | None = None, low: float | None = None) -> Selection:
    """Algorithm 1 for one budget under ``constraints`` (restnet.constraints); ``among``: the family's budgets
    and ``low`` the cheaper anchor's cost, for rules that place a budget by its neighbours."""
    return _pick(masked(constraints, matrix), cost, budget, span_of(constraints, budget, among, low), unit, names)


def _pick(matrix: torch.Tensor, cost: Callable[[StitchPoint], float], budget: float, span: Span, unit: str,
          names: tuple[str, str]) -> Selection:
    """Algorithm 1 for one budget: the highest-CKA point whose cost lies in ``span`` (NaN points never); when
    none does, the highest-CKA point at the dearest cost under ``span.highest`` (see the module)."""
    if budget <= 0:
        raise InfeasibleBudget(f"budget must be positive, got {budget}")
    m = matrix.clone().to(torch.float64)
    m[torch.isnan(m)] = float("-inf")
    if (s := _first_within(m.clone(), cost, budget, span)) is not None:
        return s
    if span.lowest > 0:
        under = [c for p in _points(m) if (c := cost(p)) <= span.highest]
        if under and (s := _first_within(m, cost, budget, Span(max(under), span.highest))) is not None:
            return replace(s, below=True)
    raise _infeasible(m.shape, cost, budget, span, unit, names)


def _points(m: torch.Tensor) -> list[StitchPoint]:
    """The points of ``m`` that Algorithm 1 may take (not -inf)."""
    return [StitchPoint(i, j) for i, j in torch.nonzero(m != float("-inf")).tolist()]


def _first_within(m: torch.Tensor, cost: Callable[[StitchPoint], float], budget: float,
                  span: Span) -> Selection | None:
    """Algorithm 1's loop on ``m`` (changed in place): argmax, accept if the cost lies in ``span``, else mask."""
    tried = 0
    while True:
        flat = int(torch.argmax(m))
        i, j = divmod(flat, m.shape[1])
        if m[i, j] == float("-inf"):
            return None
        p = StitchPoint(i, j)
        c = cost(p)
        if span.lowest <= c <= span.highest:
            return Selection(budget, p, float(m[i, j]), c, tried)
        m[i, j] = float("-inf")
        tried += 1


def _infeasible(shape: torch.Size, cost: Callable[[StitchPoint], float], budget: float, span: Span, unit: str,
                names: tuple[str, str]) -> InfeasibleBudget:
    """The error for a budget no point fits, naming the cheapest point of all (what a budget must reach)."""
    cheapest = min((StitchPoint(a, b) for a in range(shape[0]) for b in range(shape[1])), key=cost)
    within = f" (a rule caps it at {span.highest:g} {unit})" if span.highest < budget else ""
    return InfeasibleBudget(
        f"no stitch point fits the budget {budget:g} {unit}{within}; the cheapest possible variant is "
        f"{cheapest.label(*names)} at {cost(cheapest):g} {unit}")


def top_feasible(matrix: torch.Tensor, cost: Callable[[StitchPoint], float], budget: float, k: int,
                 unit: str = "", names: tuple[str, str] = ("front", "back"), constraints: Sequence[Constraint] = (),
                 among: Sequence[float] | None = None, low: float | None = None) -> list[Selection]:
    """The first k points Algorithm 1 would accept if each accepted one were masked in turn."""
    span = span_of(constraints, budget, among, low)
    m = masked(constraints, matrix).clone().to(torch.float64)
    out: list[Selection] = []
    for _ in range(k):
        try:
            s = _pick(m, cost, budget, span, unit, names)
        except InfeasibleBudget:
            if not out:
                raise
            break
        if s.below and out:  # the bounds' own points are used up: what lies under them is not theirs
            break
        out.append(replace(s, cka=float(matrix[s.point.i, s.point.j])))
        m[s.point.i, s.point.j] = float("-inf")
    return out


def select_family(matrix: torch.Tensor, cost: Callable[[StitchPoint], float], budgets: Sequence[float],
                  unit: str = "", names: tuple[str, str] = ("front", "back"), constraints: Sequence[Constraint] = (),
                  low: float | None = None) -> list[Selection]:
    """One selection per budget, duplicates (same point) removed, sorted by cost; ``low``: the cheaper
    anchor's cost, for rules that place a budget by its neighbours."""
    if not budgets:
        raise ValueError("at least one budget is needed")
    m = masked(constraints, matrix)
    seen: dict[StitchPoint, Selection] = {}
    for b, span in zip(sorted(budgets), spans(constraints, budgets, low)):
        s = _pick(m, cost, b, span, unit, names)
        seen.setdefault(s.point, s)
    return sorted(seen.values(), key=lambda s: (s.cost, s.point))


def budgets_between(low: float, high: float, n: int) -> list[float]:
    """n budgets evenly spaced strictly between two anchors' costs."""
    if n < 1:
        raise ValueError("n must be >= 1")
    lo, hi = min(low, high), max(low, high)
    return [lo + (hi - lo) * (k + 1) / (n + 1) for k in range(n)]

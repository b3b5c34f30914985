"""Budgets: absolute values in the cost metric's unit, proved feasible before any heavy work.

Costs depend only on the architectures (random weights will do), so a budget no stitch point can
meet is refused in seconds, naming the cheapest variant, instead of after anchor adaptation. With a
ladder (``budgets: ladder: N``) the budgets come from the device's limits (restnet.package.limits).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from restnet.constraints import Constraint, DeviceLimits, constraints_from, masked, spans
from restnet.cost import CostModel
from restnet.package.limits import Figures, Ladder, plan_ladder
from restnet.package.request import PackRequest
from restnet.selection import Selection, budgets_between, select_family
from restnet.stitching import StitchPoint


@dataclass
class BudgetPlan:
    budgets: list[float]
    constraints: list[Constraint] = field(default_factory=list)  # the request's rules, then the device's limits
    ships: dict[str, bool] = field(default_factory=lambda: {"front": True, "back": True})  # anchors that fit
    ladder: Ladder | None = None


def plan_budgets(cm: CostModel, req: PackRequest, names: tuple[str, str], figures: Figures | None = None) -> BudgetPlan:
    """Absolute budgets and the selection rules, and proof that each budget has a feasible point (Algorithm 1
    on a blank CKA matrix raises the same InfeasibleBudget, naming the cheapest variant, that the real run
    would). The rules' settings: the request's (the command line over the profile), else the profile's."""
    fa, ba = cm.anchor_cost("front"), cm.anchor_cost("back")
    rules: list[Constraint] = constraints_from(req, req.profile.budgets)
    if req.ladder:
        if figures is None:
            raise ValueError("a ladder needs the device figures of every stitch point")
        lad = plan_ladder(req.profile, req.ladder, cm, figures, names)
        plan = BudgetPlan(lad.budgets, rules + [DeviceLimits(lad.mask)], lad.anchors, lad)
    else:
        plan = BudgetPlan(list(req.budgets) or budgets_between(fa, ba, req.between), rules)
    blank = torch.zeros(len(cm.front.blocks), len(cm.back.blocks), dtype=torch.float64)
    select_family(blank, cm, plan.budgets, cm.unit, names, plan.constraints, min(fa, ba))
    return plan


def close_call(matrix: torch.Tensor, cm: CostModel, s: Selection, lowest: float) -> tuple[StitchPoint, float] | None:
    """A decision a re-measurement could turn: ``s``'s own point, or a point of higher CKA, whose cost lies within
    the cost model's tolerance of the budget or of its lower bound ``lowest``; (point, cost) or None."""
    t = cm.tolerance
    if t <= 0:
        return None
    near = lambda c: abs(c - s.budget) <= t * s.budget or (lowest > 0 and abs(c - lowest) <= t * lowest)  # noqa: E731
    if near(s.cost):
        return s.point, s.cost
    m = torch.nan_to_num(matrix.to(torch.float64), nan=float("-inf"))
    for flat in torch.argsort(m.flatten(), descending=True).tolist():
        p = StitchPoint(*divmod(flat, m.shape[1]))
        if m[p.i, p.j] <= s.cka:
            return None
        if near(c := cm(p)):
            return p, c
    return None


def describe_selections(sels: list[Selection], budgets: list[float], matrix: torch.Tensor, cm: CostModel,
                        constraints: Sequence[Constraint], names: tuple[str, str]) -> list[str]:
    """One log line per selection: the point, its CKA and cost, and a close call when the costs' tolerance
    (latency measured on this host) could have picked otherwise, so that two packs that differ show why.
    ``matrix``: the CKA matrix; ``constraints``: the rules the selection ran under."""
    low = min(cm.anchor_cost("front"), cm.anchor_cost("back"))
    bounds = dict(zip(sorted(budgets), spans(constraints, budgets, low)))
    matrix = masked(constraints, matrix)
    lines = []
    for s in sels:
        lowest = bounds[s.budget].lowest
        line = f"budget {s.budget:.4g} {cm.unit}: {s.point.label(*names)} CKA {s.cka:.4f}, cost {s.cost:.4g}"
        if s.below:
            line += f" [nothing costs {lowest:.4g}..{s.budget:.4g}, the budget's bounds: the dearest point under them]"
        if (c := close_call(matrix, cm, s, lowest)) is not None:
            what = "itself" if c[0] == s.point else f"{c[0].label(*names)} (CKA {float(matrix[c[0].i, c[0].j]):.4f})"
            line += (f" [close call: {what} at {c[1]:.4g} {cm.unit} is within the costs' +-{cm.tolerance:.1%} of "
                     f"the budget's bounds {lowest:.4g}..{s.budget:.4g}; another measurement may pick otherwise]")
        lines.append(line)
    return lines

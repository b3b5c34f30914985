"""Budgets: absolute values in the cost metric's unit, proved feasible before any heavy work.

Costs depend only on the architectures (random weights will do), so a budget no stitch point can
meet is refused in seconds, naming the cheapest variant, instead of after anchor adaptation. With a
ladder (``budgets: ladder: N``) the budgets come from the device's limits (restnet.package.limits).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from restnet.cost import CostModel
from restnet.package.limits import Figures, Ladder, plan_ladder
from restnet.package.request import PackRequest
from restnet.selection import budgets_between, select_family


@dataclass
class BudgetPlan:
    budgets: list[float]
    mask: torch.Tensor | None = None  # stitch points that fit the device (None: every point)
    ships: dict[str, bool] = field(default_factory=lambda: {"front": True, "back": True})  # anchors that fit
    ladder: Ladder | None = None

    def masked(self, matrix: torch.Tensor) -> torch.Tensor:
        """The CKA matrix with the points that break a device limit set to NaN (Algorithm 1 skips them)."""
        if self.mask is None:
            return matrix
        return torch.where(self.mask, matrix.to(torch.float64), torch.tensor(float("nan"), dtype=torch.float64))


def plan_budgets(cm: CostModel, req: PackRequest, names: tuple[str, str], figures: Figures | None = None) -> BudgetPlan:
    """Absolute budgets, and proof that each one has a feasible point (Algorithm 1 on a blank CKA
    matrix raises the same InfeasibleBudget, naming the cheapest variant, that the real run would)."""
    fa, ba = cm.anchor_cost("front"), cm.anchor_cost("back")
    if req.ladder:
        if figures is None:
            raise ValueError("a ladder needs the device figures of every stitch point")
        lad = plan_ladder(req.profile, req.ladder, cm, figures, names)
        plan = BudgetPlan(lad.budgets, lad.mask, lad.anchors, lad)
    else:
        plan = BudgetPlan(list(req.budgets) or budgets_between(fa, ba, req.between))
    blank = plan.masked(torch.zeros(len(cm.front.blocks), len(cm.back.blocks), dtype=torch.float64))
    select_family(blank, cm, plan.budgets, cm.unit, names, req.band, req.window, min(fa, ba))
    return plan

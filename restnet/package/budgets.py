"""Budgets: absolute values in the cost metric's unit, proved feasible before any heavy work.

Costs depend only on the architectures (random weights will do), so a budget no stitch point can
meet is refused in seconds, naming the cheapest variant, instead of after anchor adaptation.
"""
from __future__ import annotations

import torch

from restnet.cost import CostModel
from restnet.package.request import PackRequest
from restnet.selection import budgets_between, select_family


def plan_budgets(cm: CostModel, req: PackRequest, names: tuple[str, str]) -> list[float]:
    """Absolute budgets, and proof that each one has a feasible point (Algorithm 1 on a blank CKA
    matrix raises the same InfeasibleBudget, naming the cheapest variant, that the real run would)."""
    fa, ba = cm.anchor_cost("front"), cm.anchor_cost("back")
    budgets = list(req.budgets) or budgets_between(fa, ba, req.between)
    blank = torch.zeros(len(cm.front.blocks), len(cm.back.blocks), dtype=torch.float64)
    select_family(blank, cm, budgets, cm.unit, names, req.band, req.window, min(fa, ba))
    return budgets

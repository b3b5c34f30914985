"""Algorithm 1 and the cost of a stitch point."""
from __future__ import annotations

import pytest
import torch

from restnet.anchors import create_anchor
from restnet.anchors.stats import count_flops, count_params, describe
from restnet.cost import build_cost_model
from restnet.constraints import Band, Window
from restnet.selection import InfeasibleBudget, budgets_between, select, select_family
from restnet.stitching import StitchedModel, StitchLayer, StitchPoint


def _random_problem(seed):
    g = torch.Generator().manual_seed(seed)
    m = torch.rand(7, 5, generator=g, dtype=torch.float64)
    c = torch.rand(7, 5, generator=g, dtype=torch.float64) * 100
    return m, (lambda p: float(c[p.i, p.j])), c


@pytest.mark.parametrize("seed", range(5))
def test_algorithm1_is_the_best_cka_among_feasible_points(seed):
    m, cost, c = _random_problem(seed)
    for budget in (10.0, 35.0, 60.0, 99.0):
        feasible = c <= budget
        if not feasible.any():
            with pytest.raises(InfeasibleBudget):
                select(m, cost, budget)
            continue
        s = select(m, cost, budget)
        best = torch.where(feasible, m, torch.tensor(float("-inf"), dtype=torch.float64)).max()
        assert s.cka == float(best) and s.cost <= budget
        # The number of masked points is the number of points with higher CKA.
        assert s.tried == int((m > best).sum())


def test_infeasible_budget_names_cheapest_variant():
    m, cost, c = _random_problem(0)
    with pytest.raises(InfeasibleBudget, match=rf"cheapest possible variant is .* at {float(c.min()):g} MACs"):
        select(m, cost, float(c.min()) * 0.5, "MACs")
    with pytest.raises(InfeasibleBudget, match="positive"):
        select(m, cost, -1)


def test_family_dedupes_and_sorts():
    m, cost, c = _random_problem(1)
    fam = select_family(m, cost, [100.0, 99.0, 98.0, 50.0])
    points = [s.point for s in fam]
    assert len(points) == len(set(points))
    assert [s.cost for s in fam] == sorted(s.cost for s in fam)
    assert budgets_between(10, 40, 2) == [20.0, 30.0]


@pytest.mark.parametrize("metric", ["params", "flops"])
def test_cost_equals_the_built_stitched_model(metric):
    a = create_anchor("tf_efficientnet_lite2", pretrained=False)
    b = create_anchor("tf_efficientnet_lite0", pretrained=False)
    sa, sb = describe(a, 64), describe(b, 64)
    cm = build_cost_model(metric, a, b, sa, sb)
    for p in (StitchPoint(3, 2), StitchPoint(10, 8), StitchPoint(20, 15), StitchPoint(0, 14)):
        model = StitchedModel(a, b, p, StitchLayer(cm.front_specs[p.i], cm.back_specs[p.j]))
        if metric == "params":
            real = count_params(model)
        else:
            real = count_flops(model, torch.zeros(1, 3, 64, 64))[""]
        assert cm(p) == pytest.approx(real, rel=1e-9)


def test_latency_cost_is_measured_and_labelled():
    a = create_anchor("tf_efficientnet_lite0", pretrained=False)
    sa = describe(a, 32)
    cm = build_cost_model("latency", a, a, sa, sa, threads=1)
    assert cm.source.startswith("measured") and cm.threads == 1
    assert cm.unit == "ms" and cm(StitchPoint(5, 5)) > 0


def test_band_keeps_points_that_use_most_of_the_budget():
    m, cost, c = _random_problem(2)
    s = select(m, cost, 80.0, constraints=[Band(0.8)])
    assert 64.0 <= s.cost <= 80.0
    feasible = (c >= 64.0) & (c <= 80.0)
    assert s.cka == float(torch.where(feasible, m, torch.tensor(float("-inf"), dtype=torch.float64)).max())
    with pytest.raises(ValueError, match="band"):
        select(m, cost, 80.0, constraints=[Band(1.0)])


def test_window_gives_each_budget_its_own_slice():
    """CKA that prefers cheap points crowds Algorithm 1 at the cheap end; the window spreads it."""
    costs = torch.arange(10, 51, dtype=torch.float64).view(41, 1)  # one point per cost 10..50
    cka = 1.0 - costs / 100  # cheaper = higher CKA
    cost = lambda p: float(costs[p.i, p.j])  # noqa: E731
    budgets = budgets_between(10.0, 50.0, 3)  # 20, 30, 40
    crowded = select_family(cka, cost, budgets)
    assert [s.cost for s in crowded] == [10.0]  # one model: the paper's rule picks the cheapest everywhere
    spread = select_family(cka, cost, budgets, constraints=[Window(0.5)], low=10.0)
    assert [s.cost for s in spread] == [15.0, 25.0, 35.0]  # budget - 0.5 x spacing: the cheapest allowed
    ladder = [10.0] + [s.cost for s in spread] + [50.0]
    assert max(b - a for a, b in zip(ladder, ladder[1:])) <= (1 + 0.5) * 10.0
    # a slice that holds no point (a device's measured costs can leave one empty): the dearest point under
    # the budget, marked; only a budget no point fits is an error
    two = torch.tensor([[0.9, 0.8]], dtype=torch.float64)
    under = select_family(two, lambda p: (12.0, 11.0)[p.j], [20.0], constraints=[Window(0.5)], low=10.0)
    assert [(s.cost, s.below) for s in under] == [(12.0, True)]
    assert not any(s.below for s in spread)
    with pytest.raises(InfeasibleBudget, match=r"no stitch point fits the budget 20 ;"):
        select_family(torch.ones(1, 1, dtype=torch.float64), lambda p: 25.0, [20.0], constraints=[Window(0.5)],
                      low=10.0)


def test_a_pick_a_re_measurement_could_turn_is_logged_as_a_close_call():
    """With costs known to +-5 %, a pick whose own cost, or a higher-CKA point's, lies within 5 % of the budget's
    bounds is logged as a close call (two packs that differ there show why); a pick clear of them is not."""
    from restnet.cost import CostModel, PartCosts
    from restnet.package.budgets import describe_selections
    from restnet.selection import Selection
    from restnet.stitching import FeatureSpec

    fs, bs = [FeatureSpec("nchw", (4, 8, 8))] * 3, [FeatureSpec("nchw", (6, 8, 8))] * 3
    # cost(i, j) = [2, 5, 9][i] + [5, 3, 0][j]: (0, 0) 7, (1, 1) 8, (0, 1) 5
    cm = CostModel("latency", PartCosts(0, [2, 3, 4], 0), PartCosts(0, [1, 2, 3], 0), fs, bs,
                   stitch_table={(fs[0], bs[0]): 0.0}, tolerance=0.05)
    cka = torch.full((3, 3), 0.5, dtype=torch.float64)
    cka[1, 1], cka[0, 0], cka[0, 1] = 0.99, 0.9, 0.8
    rules = []  # no rules: the budget's bounds are 0..budget
    lines = describe_selections([Selection(7.8, StitchPoint(0, 0), 0.9, 7.0, 1),
                                 Selection(6.0, StitchPoint(0, 1), 0.8, 5.0, 2)], [6.0, 7.8], cka, cm, rules,
                                ("a", "b"))
    assert "close call: a[:2]→b[2:] (CKA 0.9900) at 8 ms is within the costs' +-5.0% of the budget's bounds" in lines[0]
    assert "close call" not in lines[1] and lines[1].startswith("budget 6 ms: a[:1]→b[2:] CKA 0.8000, cost 5")
    own = describe_selections([Selection(8.1, StitchPoint(1, 1), 0.99, 8.0, 0)], [8.1], cka, cm, rules, ("a", "b"))
    assert "close call: itself at 8 ms" in own[0]
    exact = CostModel("params", cm.front, cm.back, fs, bs, stitch_table=cm.stitch_table)  # no tolerance: no notes
    assert "close call" not in describe_selections([Selection(8.1, StitchPoint(1, 1), 0.99, 8.0, 0)], [8.1], cka,
                                                   exact, rules, ("a", "b"))[0]
    # a budget whose slice held no point says so, and whether another measurement might have filled it
    below = Selection(8.1, StitchPoint(0, 1), 0.8, 5.0, 0, below=True)
    line = describe_selections([below], [8.1], cka, cm, [Window(0.5)], ("a", "b"))[0]
    # its bounds: the window's 8.1 - 0.5 x (8.1 - 6), 6 the cheaper anchor's cost
    assert "[nothing costs 7.05..8.1, the budget's bounds: the dearest point under them]" in line
    assert "close call: a[:2]→b[2:] (CKA 0.9900) at 8 ms" in line  # within 5 % of 8.1
    clear = describe_selections([below], [8.1], cka, exact, [Window(0.5)], ("a", "b"))[0]
    assert "nothing costs 7.05..8.1" in clear and "close call" not in clear

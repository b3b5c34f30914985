"""Selection rules as objects (restnet.constraints): each one picks what the keyword it replaced picked,
and a new rule is its class and its registration.

The reference below is Algorithm 1 with the rules as keyword arguments (``band``, ``floor``, ``window``)
and the device limits applied to the matrix by the caller; the rules as objects must select exactly
what it selects, errors included, on random matrices.
"""
from __future__ import annotations

import math
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from restnet import constraints as rules
from restnet.constraints import Band, DeviceLimits, Floor, Setting, Window, constraints_from, register
from restnet.selection import InfeasibleBudget, Selection, select, select_family, top_feasible
from restnet.stitching import StitchPoint

# ---- the reference: the rules as keywords ----


def _ref_select(matrix, cost, budget, unit="", names=("front", "back"), band=0.0, floor=None, below=False):
    if budget <= 0:
        raise InfeasibleBudget(f"budget must be positive, got {budget}")
    if not 0.0 <= band < 1.0:
        raise ValueError(f"band must be in [0, 1), got {band}")
    lowest = max(band * budget, floor if floor is not None else 0.0)
    m = matrix.clone().to(torch.float64)
    m[torch.isnan(m)] = float("-inf")
    tried = 0
    while True:
        i, j = divmod(int(torch.argmax(m)), m.shape[1])
        if m[i, j] == float("-inf"):
            # bounds that hold no point: the dearest point under the budget, if any
            finite = matrix.clone().to(torch.float64).nan_to_num(nan=float("-inf"))
            under = [cost(StitchPoint(a, b)) for a in range(m.shape[0]) for b in range(m.shape[1])
                     if finite[a, b] > float("-inf") and cost(StitchPoint(a, b)) <= budget]
            if lowest > 0 and under and not below:
                return replace(_ref_select(matrix, cost, budget, unit, names, 0.0, max(under), True), below=True)
            cheapest = min((StitchPoint(a, b) for a in range(m.shape[0]) for b in range(m.shape[1])), key=cost)
            raise InfeasibleBudget(
                f"no stitch point fits the budget {budget:g} {unit}; the cheapest possible variant is "
                f"{cheapest.label(*names)} at {cost(cheapest):g} {unit}")
        p = StitchPoint(i, j)
        c = cost(p)
        if lowest <= c <= budget:
            return Selection(budget, p, float(matrix[i, j]), c, tried)
        m[i, j] = float("-inf")
        tried += 1


def _ref_top_feasible(matrix, cost, budget, k, band=0.0, floor=None):
    m = matrix.clone().to(torch.float64)
    out = []
    for _ in range(k):
        try:
            s = _ref_select(m, cost, budget, "", ("front", "back"), band, floor)
        except InfeasibleBudget:
            if not out:
                raise
            break
        if s.below and out:
            break
        out.append(replace(s, cka=float(matrix[s.point.i, s.point.j])))
        m[s.point.i, s.point.j] = float("-inf")
    return out


def _ref_window_floors(budgets, window, low=None):
    if not 0.0 <= window <= 1.0:
        raise ValueError(f"window must be in [0, 1], got {window}")
    bs = sorted(budgets)
    if not window:
        return [None] * len(bs)
    prev = [low] + bs[:-1]
    if low is None:
        prev[0] = bs[0] - (bs[1] - bs[0]) if len(bs) > 1 else 0.0
    return [b - window * (b - p) for b, p in zip(bs, prev)]


def _ref_select_family(matrix, cost, budgets, band=0.0, window=0.0, low=None):
    seen = {}
    for b, floor in zip(sorted(budgets), _ref_window_floors(budgets, window, low)):
        s = _ref_select(matrix, cost, b, "", ("front", "back"), band, floor)
        seen.setdefault(s.point, s)
    return sorted(seen.values(), key=lambda s: (s.cost, s.point))


def _ref_masked(mask, matrix):
    return torch.where(mask, matrix.to(torch.float64), torch.tensor(float("nan"), dtype=torch.float64))


# ---- random problems ----


def _problem(seed: int, shape=(6, 5)):
    """A CKA matrix (with a few NaN, as a real one can have), costs, budgets between two 'anchors', a mask."""
    g = torch.Generator().manual_seed(seed)
    m = torch.rand(shape, generator=g, dtype=torch.float64)
    m[torch.rand(shape, generator=g) < 0.05] = float("nan")
    c = torch.rand(shape, generator=g, dtype=torch.float64) * 90 + 10
    n = int(torch.randint(1, 6, (1,), generator=g))
    budgets = sorted((torch.rand(n, generator=g, dtype=torch.float64) * 90 + 10).tolist(), reverse=bool(seed % 2))
    mask = torch.rand(shape, generator=g) < 0.7
    return m, (lambda p: float(c[p.i, p.j])), budgets, mask


def _outcome(f):
    """What a selection returns, or the error it raises (type and message), so failures compare too."""
    try:
        return f()
    except (InfeasibleBudget, ValueError) as err:
        return type(err), str(err)


SEEDS = range(8)  # with the NaN, the mask and 1 to 5 budgets each, every branch is taken


@pytest.mark.parametrize("seed", SEEDS)
def test_band_alone_selects_what_the_band_keyword_did(seed):
    m, cost, budgets, _ = _problem(seed)
    band = (0.0, 0.3, 0.7, 0.95)[seed % 4]
    for b in budgets:
        assert _outcome(lambda: select(m, cost, b, "MACs", ("a", "b"), constraints_from({"band": band}))) == \
            _outcome(lambda: _ref_select(m, cost, b, "MACs", ("a", "b"), band=band))
    assert _outcome(lambda: select_family(m, cost, budgets, constraints=constraints_from({"band": band}))) == \
        _outcome(lambda: _ref_select_family(m, cost, budgets, band=band))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("low", [None, 10.0, 30.0])
def test_window_alone_selects_what_the_window_keyword_did(seed, low):
    m, cost, budgets, _ = _problem(seed)
    window = (0.0, 0.25, 0.5, 1.0)[seed % 4]
    for family in (budgets, budgets + budgets[:1]):  # a budget listed twice: each keeps its place's bounds
        got = _outcome(lambda: select_family(m, cost, family, constraints=constraints_from({"window": window}),
                                             low=low))
        assert got == _outcome(lambda: _ref_select_family(m, cost, family, window=window, low=low))
    # one budget at a time, as one of the family (how --rerank takes it)
    floors = dict(zip(sorted(budgets), _ref_window_floors(budgets, window, low)))
    for b in budgets:
        assert _outcome(lambda: top_feasible(m, cost, b, 3, constraints=[Window(window)], among=budgets, low=low)) \
            == _outcome(lambda: _ref_top_feasible(m, cost, b, 3, floor=floors[b]))


@pytest.mark.parametrize("seed", SEEDS)
def test_floor_alone_selects_what_the_floor_keyword_did(seed):
    m, cost, budgets, _ = _problem(seed)
    for b in budgets:
        for floor in (-5.0, 0.0, 0.5 * b, b, 1.5 * b):
            assert _outcome(lambda: select(m, cost, b, constraints=[Floor(floor)])) == \
                _outcome(lambda: _ref_select(m, cost, b, floor=floor))


@pytest.mark.parametrize("seed", SEEDS)
def test_device_limits_alone_select_what_the_masked_matrix_did(seed):
    m, cost, budgets, mask = _problem(seed)
    assert _outcome(lambda: select_family(m, cost, budgets, constraints=[DeviceLimits(mask)])) == \
        _outcome(lambda: _ref_select_family(_ref_masked(mask, m), cost, budgets))


@pytest.mark.parametrize("seed", SEEDS)
def test_all_rules_together_select_what_the_keywords_did(seed):
    m, cost, budgets, mask = _problem(seed)
    together = [*constraints_from(SimpleNamespace(band=0.2, window=0.5)), DeviceLimits(mask)]
    assert _outcome(lambda: select_family(m, cost, budgets, constraints=together, low=10.0)) == \
        _outcome(lambda: _ref_select_family(_ref_masked(mask, m), cost, budgets, band=0.2, window=0.5, low=10.0))


def test_rules_check_their_values_as_the_keywords_did():
    with pytest.raises(ValueError, match=r"band must be in \[0, 1\), got 1.0"):
        Band(1.0)
    with pytest.raises(ValueError, match=r"window must be in \[0, 1\], got 1.5"):
        Window(1.5)


def test_settings_turn_rules_on_in_registration_order():
    """The request's value wins over the profile's; 0 or None leaves a rule off; log lines name them as before."""
    request, profile = SimpleNamespace(band=0.0, window=0.25), SimpleNamespace(band=0.5, window=0.0)
    assert constraints_from(request, profile) == [Window(0.25)]
    assert constraints_from(SimpleNamespace(), profile) == [Band(0.5)]
    assert [str(c) for c in constraints_from({"window": 0.25, "band": 0.5})] == ["band 0.5", "window 0.25"]
    assert constraints_from({"band": None}, profile) == []


# ---- a new rule: its class and its registration, nothing else ----


class Ceiling(Setting):
    """A toy rule: no budget takes a point costing more than value (whatever the budget)."""

    def highest(self, budgets: list[float], low: float | None) -> list[float]:
        return [min(b, self.value) for b in budgets]


def test_a_new_rule_is_its_class_and_its_registration(monkeypatch):
    """Registered here, in the test, a ceiling is turned on by its setting and honoured by select_family,
    with no other file edited; an infeasible budget names the rule's cap."""
    monkeypatch.setattr(rules, "RULES", dict(rules.RULES))  # register into a copy: other tests see no ceiling
    register("ceiling")(Ceiling)
    costs = torch.arange(10, 51, dtype=torch.float64).view(41, 1)  # one point per cost 10..50
    cka = costs / 100  # dearer = higher CKA: Algorithm 1 takes each budget's whole allowance
    cost = lambda p: float(costs[p.i, p.j])  # noqa: E731
    settings = SimpleNamespace(band=0.0, window=0.0, ceiling=32.0)
    assert [str(c) for c in constraints_from(settings)] == ["ceiling 32"]
    assert [s.cost for s in select_family(cka, cost, [20.0, 30.0, 40.0])] == [20.0, 30.0, 40.0]
    fam = select_family(cka, cost, [20.0, 30.0, 40.0], constraints=constraints_from(settings))
    assert [s.cost for s in fam] == [20.0, 30.0, 32.0]
    # bounds 35..32 hold no point: the dearest point under the ceiling
    assert select(cka, cost, 40.0, "MACs", constraints=[*constraints_from(settings), Floor(35.0)]).cost == 32.0
    with pytest.raises(InfeasibleBudget, match=r"budget 40 MACs \(a rule caps it at 5 MACs\); the cheapest"):
        select(cka, cost, 40.0, "MACs", constraints=[Ceiling(5.0)])
    assert math.isclose(rules.spans(constraints_from(settings), [40.0, 20.0])[1].highest, 32.0)


def test_budgets_listed_out_of_order_keep_their_bounds():
    """The family is sorted before the rules see it; a budget's bounds are those of its place in it."""
    spans = rules.spans([Window(0.5)], [30.0, 10.0, 20.0], low=0.0)
    assert [(s.lowest, s.highest) for s in spans] == [(5.0, 10.0), (15.0, 20.0), (25.0, 30.0)]
    assert rules.span_of([Window(0.5)], 20.0, [30.0, 10.0, 20.0], 0.0) == spans[1]


def test_a_new_rule_set_in_the_profile_reaches_the_pack(monkeypatch):
    """restnet-pack reads a rule's setting from the request, else from the profile's ``budgets``: a setting
    only the profile has (a field on profiles.Budgets) turns the rule on in the pack's plan, whose
    feasibility check then honours it."""
    from restnet.cost import CostModel, PartCosts
    from restnet.package.budgets import plan_budgets
    from restnet.stitching import FeatureSpec

    monkeypatch.setattr(rules, "RULES", dict(rules.RULES))
    register("ceiling")(Ceiling)
    fs, bs = [FeatureSpec("nchw", (4, 8, 8))] * 4, [FeatureSpec("nchw", (4, 8, 8))] * 4
    # cost(i, j) = 10 (i + 1) + 5 (3 - j): 10 (lite[:1] -> rest[4:]) to 55; anchors 40 and 20
    cm = CostModel("params", PartCosts(0, [10] * 4, 0), PartCosts(0, [5] * 4, 0), fs, bs,
                   stitch_table={(fs[0], bs[0]): 0.0})

    def request(ceiling):
        profile = SimpleNamespace(budgets=SimpleNamespace(band=0.5, window=0.0, ceiling=ceiling))
        return SimpleNamespace(ladder=0, budgets=(), between=3, band=0.0, window=0.0, profile=profile)

    plan = plan_budgets(cm, request(28.0), ("a", "b"))  # the request's band (0: off) over the profile's
    assert plan.budgets == [25.0, 30.0, 35.0] and plan.constraints == [Ceiling(28.0)]
    with pytest.raises(InfeasibleBudget, match="caps it at 5 params"):
        plan_budgets(cm, request(5.0), ("a", "b"))

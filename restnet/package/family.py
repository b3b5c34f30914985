"""Is the family a ladder? Rank correlation of cost and accuracy, and the largest hole in its cost range.

A family is worth shipping when paying more buys accuracy (Spearman rho of
cost against top-1 near 1) and when every budget finds a member near it (no
gap between consecutive members' costs larger than a share of the anchors'
cost range). Both are computed from the manifest's variants, so `restnet
inspect` can recompute them on any package.
"""
from __future__ import annotations

import math

from scipy.stats import spearmanr

RHO_TARGET = 0.8  # the family's accuracy rises with cost
GAP_TARGET = 0.40  # no cost gap above this share of the anchors' cost range


def family_stats(variants: list[dict]) -> dict | None:
    """{spearman_rho, rho_p, largest_gap, gap_between, members} or None for fewer than 3 members.

    ``largest_gap`` is the largest difference between consecutive members' costs
    divided by the cost range spanned by the two anchors (by the whole family
    when the anchors are not in it)."""
    if len(variants) < 3:
        return None
    vs = sorted(variants, key=lambda v: v["cost"])
    costs, accs = [v["cost"] for v in vs], [v["accuracy"] for v in vs]
    anchors = [v["cost"] for v in vs if v["kind"] == "anchor"]
    lo, hi = (min(anchors), max(anchors)) if len(anchors) == 2 else (costs[0], costs[-1])
    span = hi - lo
    gaps = [(b["cost"] - a["cost"], a["id"], b["id"]) for a, b in zip(vs, vs[1:])]
    gap, left, right = max(gaps)
    rho, p = spearmanr(costs, accs)
    if not (math.isfinite(rho) and math.isfinite(p)):
        # All accuracies (or costs) tied: no ranking to correlate. scipy says nan, which is not JSON
        # (a firmware parser refuses the manifest): report no correlation and no evidence, rho 0, p 1.
        rho, p = 0.0, 1.0
    # Spearman's rho over n members takes discrete values (1 - 6 d / (n^3 - n)): round off float noise,
    # so that two adjacent swaps among five give 0.8, not 0.7999999999.
    return {"members": len(vs), "spearman_rho": round(float(rho), 9), "rho_p": float(p),
            "largest_gap": gap / span if span > 0 else 0.0, "gap_between": [left, right],
            "targets": {"spearman_rho_min": RHO_TARGET, "largest_gap_max": GAP_TARGET}}


def describe(stats: dict | None) -> str:
    """One line for the log, the report and `restnet inspect`."""
    if stats is None:
        return "family: fewer than 3 members, no ladder statistics"
    ok_rho = stats["spearman_rho"] >= RHO_TARGET
    ok_gap = stats["largest_gap"] <= GAP_TARGET
    return (f"family of {stats['members']}: Spearman rho(cost, top-1) = {stats['spearman_rho']:.2f} "
            f"({'>=' if ok_rho else '<'} {RHO_TARGET:g}), largest cost gap = {stats['largest_gap']:.0%} of the "
            f"anchors' range ({'<=' if ok_gap else '>'} {GAP_TARGET:.0%}; between {stats['gap_between'][0]} "
            f"and {stats['gap_between'][1]})")

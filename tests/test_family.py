"""The family's ladder statistics: rank correlation of cost and accuracy, largest cost gap."""
from __future__ import annotations

import pytest

from restnet.package.family import describe, family_stats


def _v(vid, kind, cost, acc):
    return {"id": vid, "kind": kind, "cost": cost, "accuracy": acc}


def test_an_ordered_evenly_spaced_family_passes():
    fam = [_v("a0", "anchor", 30, 0.78), _v("s1", "stitched", 34, 0.785), _v("s2", "stitched", 38, 0.79),
           _v("s3", "stitched", 42, 0.795), _v("a1", "anchor", 46, 0.80)]
    s = family_stats(fam)
    assert s["spearman_rho"] == pytest.approx(1.0) and s["largest_gap"] == pytest.approx(0.25)
    assert "(>= 0.8)" in describe(s) and "(<= 40%" in describe(s)


def test_crowded_and_disordered_family_fails_both():
    fam = [_v("a0", "anchor", 30, 0.78), _v("s1", "stitched", 31, 0.80), _v("s2", "stitched", 32, 0.81),
           _v("s3", "stitched", 34, 0.805), _v("a1", "anchor", 46, 0.79)]
    s = family_stats(fam)
    assert s["spearman_rho"] < 0.8
    assert s["largest_gap"] == pytest.approx(12 / 16) and s["gap_between"] == ["s3", "a1"]
    text = describe(s)
    assert "(< 0.8)" in text and "(> 40%" in text


def test_too_small_a_family_has_no_statistics():
    assert family_stats([_v("a", "anchor", 1, 0.5), _v("b", "anchor", 2, 0.6)]) is None
    assert "fewer than 3" in describe(None)


def test_rho_is_exact_at_the_threshold():
    """Two adjacent swaps among five members is rho = 0.8 exactly (float noise must not fail it)."""
    fam = [_v("a0", "anchor", 32, 0.7831), _v("s1", "stitched", 35, 0.7826), _v("s2", "stitched", 39, 0.7967),
           _v("s3", "stitched", 43, 0.7940), _v("a1", "anchor", 48, 0.7988)]
    s = family_stats(fam)
    assert s["spearman_rho"] == 0.8 and "(>= 0.8)" in describe(s)


def test_a_family_of_tied_accuracies_has_no_correlation_and_stays_json():
    """All members equally accurate (a tiny test pack can do that): scipy's rho is nan, which is not JSON
    (firmware parsers refuse it) and never equals itself; the manifest says rho 0, p 1 instead."""
    import json

    fam = [_v("a0", "anchor", 10, 0.083), _v("s1", "stitched", 11, 0.083), _v("a1", "anchor", 12, 0.083)]
    s = family_stats(fam)
    assert (s["spearman_rho"], s["rho_p"]) == (0.0, 1.0) and "(< 0.8)" in describe(s)
    assert json.loads(json.dumps(s, allow_nan=False)) == s

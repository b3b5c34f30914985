"""Dropping the members a cheaper member beats (restnet.package.dominance): only on real evidence."""
from __future__ import annotations

import numpy as np
import pytest

from restnet.package.dominance import dominated


def _correct(n: int, right: int, rng: np.random.Generator, like: np.ndarray | None = None, flip: int = 0) -> np.ndarray:
    """n images, ``right`` of them right; or ``like`` with ``flip`` right answers turned wrong."""
    if like is not None:
        out = like.copy()
        out[rng.choice(np.flatnonzero(out), flip, replace=False)] = False
        return out
    out = np.zeros(n, bool)
    out[rng.choice(n, right, replace=False)] = True
    return out


def test_a_costlier_member_clearly_worse_than_a_cheaper_one_is_dropped():
    rng = np.random.default_rng(0)
    small = _correct(5000, 4050, rng)  # 81 %
    good = _correct(5000, 0, rng, like=small)  # the same decisions: no evidence either way
    bad = _correct(5000, 0, rng, like=small, flip=80)  # 1.6 points below, as pixel-7's top rung
    large = _correct(5000, 0, rng, like=small, flip=150)  # an anchor: never dropped, even when worse
    drops = dominated([1.0, 2.0, 3.0, 4.0], [small, good, bad, large], [False, True, True, False])
    assert [(d.index, d.by) for d in drops] == [(2, 0)]
    assert drops[0].p < 1e-10 and drops[0].accuracy < drops[0].by_accuracy


def test_noise_and_small_splits_drop_nothing():
    rng = np.random.default_rng(1)
    small = _correct(5000, 4050, rng)
    # 0.2 points below with 200 disagreements each way: within the noise of 5,000 images
    near = small.copy()
    swap_off = rng.choice(np.flatnonzero(small), 110, replace=False)
    swap_on = rng.choice(np.flatnonzero(~small), 100, replace=False)
    near[swap_off], near[swap_on] = False, True
    assert dominated([1.0, 2.0], [small, near], [False, True]) == []
    # the test packs' 48 validation images: 3 disagreements cannot drop a member
    tiny = small[:48].copy()
    worse = tiny.copy()
    worse[np.flatnonzero(tiny)[:3]] = False
    assert dominated([1.0, 2.0], [tiny, worse], [False, True]) == []


def test_only_kept_members_can_drop_another():
    """A dropped member is no reference: the member after it is compared with what ships."""
    rng = np.random.default_rng(2)
    best = _correct(5000, 4200, rng)
    mid = _correct(5000, 0, rng, like=best, flip=200)
    low = _correct(5000, 0, rng, like=mid, flip=10)  # close to mid, far below best
    drops = dominated([1.0, 2.0, 3.0], [best, mid, low], [False, True, True])
    assert {d.index: d.by for d in drops} == {1: 0, 2: 0}


def test_equal_costs_are_not_cheaper():
    rng = np.random.default_rng(3)
    a = _correct(5000, 4200, rng)
    b = _correct(5000, 0, rng, like=a, flip=300)
    assert dominated([1.0, 1.0], [a, b], [True, True]) == []


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="one entry per member"):
        dominated([1.0], [], [True])


def test_the_small_anchor_trained_alike_drops_the_members_it_beats_and_never_ships():
    """The pack's drop step (restnet.package.build): the control competes at the small anchor's cost."""
    from restnet.data import InputSpec
    from restnet.package.build import _drop_dominated
    from restnet.package.fairness import AnchorControl
    from restnet.package.variants import Built

    rng = np.random.default_rng(1)
    small = _correct(5000, 4050, rng)  # 81 %
    alike = small.copy()
    alike[rng.choice(np.flatnonzero(~small), 80, replace=False)] = True  # +1.6 points from training alone
    member = alike.copy()
    member[rng.choice(np.flatnonzero(member), 40, replace=False)] = False  # above the shipped anchor, below alike
    close = alike.copy()
    close[rng.choice(np.flatnonzero(close), 3, replace=False)] = False  # 3 images: noise, kept
    spec = InputSpec(32, (0.5,) * 3, (0.5,) * 3)

    def built(kind, name, cost, correct):
        return Built(kind, correct, name, cost, float(correct.mean()), 0, 0, 0, spec)

    family = [built("anchor", "small", 1.0, small), built("stitched", "m1", 2.0, member),
              built("stitched", "m2", 3.0, close), built("anchor", "large", 4.0, small)]

    class Val:  # the runner's cached validation correctness, keyed here by the "model" itself
        def val_correct(self, model, spec):
            return model

    control = AnchorControl("back", "small", 8, 1.0, 0.81, 0.826, alike)
    lines = []
    kept = _drop_dominated(Val(), family, type("CM", (), {"unit": "MACs"})(), control, lines.append)
    assert [b.name for b in kept] == ["small", "m2", "large"]
    assert len(lines) == 1 and "dropped m1" in lines[0] and "below small trained alike's" in lines[0]

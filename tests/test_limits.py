"""Device limits drive the family: each limit can bind the ladder, and one no variant meets stops early.

Real timm architectures (random weights: limits depend on shapes, not on weights), real fvcore MACs, real
XNNPACK .pte latency of the anchors on this host; only the limits' values are chosen by the tests.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner
from helpers import TINY_PACK

from restnet.anchors import get_anchor
from restnet.anchors.blocks import cut
from restnet.anchors.stats import describe
from restnet.cli import main
from restnet.constraints import DeviceLimits, Window
from restnet.cost import build_cost_model
from restnet.package.latency import host_pte_ms
from restnet.package.limits import FIELD, LIMITS, Figures, activation_peaks, broken, check_storage, \
    latency_figures, plan_ladder
from restnet.profiles import PROFILE_DIR, Profile, ProfileError
from restnet.selection import select_family
from restnet.stitching import StitchPoint
from restnet.training.adapt import timm_for_task

RES = 32
NAMES = ("tf_efficientnet_lite2", "tf_efficientnet_lite0")


@pytest.fixture(scope="module")
def figures(shared_cache) -> Figures:
    """The pair's figures at RES px; in the run-wide cache, where the tiny packs' anchor .pte files are (only their
    timing at one thread is this fixture's own)."""
    from helpers import restnet_cache

    arch = {}
    for role, name in zip(("front", "back"), NAMES):
        torch.manual_seed(0)
        arch[role] = cut(timm_for_task(name, 10, RES).eval(), name, get_anchor(name).family).eval()
    stats = {r: describe(m, RES) for r, m in arch.items()}
    cm = {k: build_cost_model(k, arch["front"], arch["back"], stats["front"], stats["back"], threads=1)
          for k in ("params", "flops", "latency")}
    with restnet_cache(shared_cache):
        lat = latency_figures(cm["latency"], lambda r: host_pte_ms(arch[r], RES, 1), 12.0)
    return Figures(lat, cm["flops"], cm["params"], activation_peaks(arch["front"], RES),
                   activation_peaks(arch["back"], RES))


def _profile(**limits) -> Profile:
    data = yaml.safe_load((PROFILE_DIR / "rpi4.yaml").read_text())
    data.update(ram_mb=1_000_000, model_ram_share=1.0, storage_mb=1_000_000, compute_gmacs=1000.0,
                latency_target_ms=1e6)
    data.update(limits)
    return Profile.model_validate(data)


_SET = {"latency": lambda v: {"latency_target_ms": v}, "compute": lambda v: {"compute_gmacs": v / 1e9},
        "ram": lambda v: {"ram_mb": v, "model_ram_share": 1.0}, "storage": lambda v: {"storage_mb": v}}


@pytest.mark.parametrize("limit", LIMITS)
def test_each_limit_can_bind_the_ladder(limit, figures):
    """A limit between the anchors' figures: it binds, the large anchor stays home, and every point the
    selection can reach fits it; the ladder ends near the limit, not at the large anchor."""
    small, large = figures.anchor("back")[limit], figures.anchor("front")[limit]
    assert small < large, f"{limit}: lite0 should be below lite2"
    value = (small + large) / 2
    if limit in ("ram", "storage"):
        value = int(value) + 1  # the profile takes whole MB
    prof = _profile(**_SET[limit](value))
    cm = figures.flops
    lad = plan_ladder(prof, 3, cm, figures, NAMES)
    assert lad.binding == limit
    assert lad.anchors == {"front": False, "back": True}
    assert max(lad.budgets) < cm.anchor_cost("front")
    blank = torch.zeros(lad.mask.shape, dtype=torch.float64)
    rules = [DeviceLimits(lad.mask), Window(0.25)]
    for s in select_family(blank, cm, lad.budgets, cm.unit, NAMES, rules, cm.anchor_cost("back")):
        assert figures.point(s.point)[limit] <= prof_limit(prof, limit)
    # every masked point really breaks a limit, every kept one breaks none
    for i in range(lad.mask.shape[0]):
        for j in range(lad.mask.shape[1]):
            assert bool(lad.mask[i, j]) == (not broken(figures.point(StitchPoint(i, j)), lad.limits))


def prof_limit(p: Profile, limit: str) -> float:
    return {"latency": p.latency_target_ms, "compute": (p.compute_gmacs or 0) * 1e9, "ram": p.model_ram_mb,
            "storage": p.storage_mb}[limit]


def test_generous_limits_end_the_ladder_at_the_large_anchor(figures):
    cm = figures.flops
    lad = plan_ladder(_profile(), 3, cm, figures, NAMES)
    lo, hi = cm.anchor_cost("back"), cm.anchor_cost("front")
    assert lad.binding == "anchor" and lad.anchors == {"front": True, "back": True}
    assert lad.budgets == pytest.approx([lo + (hi - lo) * k / 4 for k in (1, 2, 3)])  # = `between: 3`


@pytest.mark.parametrize("limit", LIMITS)
def test_a_limit_below_every_variant_names_the_limit_and_the_cheapest_figure(limit, figures):
    cheapest = min(figures.point(StitchPoint(i, j))[limit] for i in range(figures.flops.front.blocks.__len__())
                   for j in range(len(figures.flops.back.blocks)))
    value = min(cheapest, figures.anchor("back")[limit]) / 2
    if limit in ("ram", "storage"):
        value = max(1, int(value))
        if value >= min(cheapest, figures.anchor("back")[limit]):
            pytest.skip(f"{limit}: every variant is under 2 MB at {RES} px")
    with pytest.raises(ProfileError) as e:
        plan_ladder(_profile(**_SET[limit](value)), 3, figures.flops, figures, NAMES)
    msg = str(e.value)
    assert "no variant fits" in msg and f"{limit} ({FIELD[limit]})" in msg and "cheapest stitch point" in msg


def test_pack_stops_in_seconds_when_no_variant_fits(tmp_path, cache):
    """Through the CLI, before any adaptation: the limit, the small anchor's figure, the cheapest point's."""
    data = yaml.safe_load((PROFILE_DIR / "rpi4.yaml").read_text())
    data["compute_gmacs"] = 0.0001  # 0.1 M MACs: below anything at 32 px
    path = tmp_path / "tiny-device.yaml"
    path.write_text(yaml.safe_dump(data))
    res = CliRunner().invoke(main, ["pack", "--profile", str(path), "--out", str(tmp_path / "pkg"), *TINY_PACK])
    assert res.exit_code == 3, res.output  # a bad profile (toolkit.errors)
    assert "no variant fits" in res.output and "compute (compute_gmacs): limit 0.1 M MACs" in res.output
    assert not (cache / "task-anchors").exists(), "anchors were adapted before the limits were checked"
    assert not (cache / "anchor-pte-ms").exists(), "the anchors were timed though compute alone rules the device out"


def test_package_larger_than_storage_is_refused(tmp_path):
    (tmp_path / "variants").mkdir()
    (tmp_path / "variants" / "a.pte").write_bytes(b"\0" * (3 * 2**20))
    assert check_storage(_profile(storage_mb=4), tmp_path) == pytest.approx(3.0)
    with pytest.raises(ProfileError, match="the package is 3.0 MB, over storage_mb 2"):
        check_storage(_profile(storage_mb=2), tmp_path)


def test_every_shipped_profile_uses_the_ladder():
    for path in Path(PROFILE_DIR).glob("*.yaml"):
        assert yaml.safe_load(path.read_text())["budgets"].get("ladder"), path.name


@pytest.mark.slow
def test_weak_board_package_leaves_the_large_anchor_home_and_names_the_binding_limit(tmp_path, shared):
    """rpi-zero-2w end to end (tiny sizes): its RAM share keeps lite2 out; the manifest says so per member. In the
    run-wide cache (conftest.shared_cache): the adapted anchors and lite0's file are the tiny rpi4 family's."""
    from toolkit.package import open_verified

    out = tmp_path / "pkg"
    res = CliRunner().invoke(main, ["pack", "--profile", "rpi-zero-2w", "--out", str(out), *TINY_PACK],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())  # the log wraps at the terminal's width
    assert "binding: ram" in text and "not shipped (over a limit): tf_efficientnet_lite2" in text
    _, m = open_verified(out)
    prof = m["profile"]
    assert prof["budget_mode"] == "ladder" and prof["binding_limit"] == "ram"
    assert {v["front"]["anchor"] for v in m["variants"] if v["kind"] == "anchor"} == {"tf_efficientnet_lite0"}
    for v in m["variants"]:
        room = v["limits"]["headroom"]
        assert set(room) == set(LIMITS) and room["latency"] is None  # no latency source for this board
        assert room["ram"] >= 0 and room["compute"] >= 0 and room["storage"] >= 0, (v["id"], room)
        assert v["limits"]["binding"] == ("ram" if v["kind"] == "stitched" else None)
    assert "the **ram** limit ends the family" in (out / "README.md").read_text()

"""Device latency on the workstation: a restnet-bench table read back, predictions, and which figure wins.

Synthetic tables with round numbers, so every expected figure is worked out by hand here.
"""
from __future__ import annotations

import json

import pytest
from torch import nn

from restnet.cost import CostModel, PartCosts
from restnet.data import InputSpec
from restnet.package.latency import DeviceLatency, LatencyTable, LatencyTableError, predicted_cost_model
from restnet.package.request import PackRequest
from restnet.package.variants import Built
from restnet.profiles import LatencyEstimate, load_profile
from restnet.selection import Selection
from restnet.stitching import FeatureSpec, StitchPoint
from toolkit.formats import LATENCY_TABLE_FORMAT, LATENCY_TABLE_VERSION, part_name, stitch_name

NAMES = ("big", "small")
FRONT_SPECS = [FeatureSpec("nchw", (4, 8, 8)), FeatureSpec("nchw", (8, 4, 4))]
BACK_SPECS = [FeatureSpec("nchw", (6, 8, 8)), FeatureSpec("nchw", (12, 4, 4))]
FRONT_PARTS = {"stem": 1.0, "block00": 2.0, "block01": 3.0, "head": 0.5}  # sum 6.5, 4 programs
BACK_PARTS = {"stem": 0.7, "block00": 1.5, "block01": 2.5, "head": 0.3}  # sum 5.0, 4 programs
OVERHEAD = 0.1  # per extra program: a whole anchor measures its sum of parts - 3 x 0.1
STITCH_MS = 0.25


def _shapes() -> CostModel:
    """A cost model of the pair in any metric: prediction reads only its block counts and specs."""
    return CostModel("params", PartCosts(1, [1, 1], 1), PartCosts(1, [1, 1], 1), FRONT_SPECS, BACK_SPECS)


def _table(tmp_path, variants: dict | None = None, drop: str | None = None, resolution: int = 32) -> LatencyTable:
    blocks = {}
    for role, parts in (("front", FRONT_PARTS), ("back", BACK_PARTS)):
        for part, ms in parts.items():
            name = part_name(role, "block", int(part[5:])) if part.startswith("block") else part_name(role, part)
            blocks[name] = {"p50_ms": ms}
    for s in FRONT_SPECS:
        for d in BACK_SPECS:
            blocks[stitch_name(s, d)] = {"p50_ms": STITCH_MS}
    blocks.pop(drop, None)
    if variants is None:
        variants = {"sha-big": {"kind": "anchor", "anchor": "big", "p50_ms": 6.5 - 3 * OVERHEAD, "runs": 5},
                    "sha-small": {"kind": "anchor", "anchor": "small", "p50_ms": 5.0 - 3 * OVERHEAD, "runs": 5}}
    data = {"format": LATENCY_TABLE_FORMAT, "version": LATENCY_TABLE_VERSION, "device": "pi", "threads": 4,
            "runtime": "rt 1.0", "package": {"resolution": resolution}, "variants": variants, "blocks": blocks}
    path = tmp_path / "latency-table.json"
    path.write_text(json.dumps(data))
    return LatencyTable(path)


def test_a_point_is_the_sum_of_its_parts_less_the_overhead_of_the_extra_programs(tmp_path):
    cm = predicted_cost_model(_table(tmp_path), _shapes(), NAMES, 32)
    assert cm.metric == "latency" and cm.offset == pytest.approx(OVERHEAD)
    # front stem + block00, the stitch, back block01 + head: 5 programs fused into one = 4 overheads saved.
    raw = 1.0 + 2.0 + STITCH_MS + 2.5 + 0.3
    assert cm(StitchPoint(0, 0)) == pytest.approx(raw - 4 * OVERHEAD)
    raw = 1.0 + 2.0 + 3.0 + STITCH_MS + 0.3  # front to block01, back after block01 = head only
    assert cm(StitchPoint(1, 1)) == pytest.approx(raw - 4 * OVERHEAD)
    # The overhead was fitted on the anchors, so a whole anchor predicts its own measurement.
    assert cm.anchor_cost("front") == pytest.approx(6.5 - 3 * OVERHEAD)
    assert cm.anchor_cost("back") == pytest.approx(5.0 - 3 * OVERHEAD)
    assert "device table pi" in cm.source


def test_without_whole_anchors_no_overhead_is_fitted(tmp_path):
    cm = predicted_cost_model(_table(tmp_path, variants={}), _shapes(), NAMES, 32)
    assert cm.offset == 0.0 and cm(StitchPoint(0, 0)) == pytest.approx(1.0 + 2.0 + STITCH_MS + 2.5 + 0.3)


def test_a_missing_probe_and_another_resolution_are_refused(tmp_path):
    with pytest.raises(LatencyTableError, match=r"no measurement for probe 'back.block01'.*--blocks"):
        predicted_cost_model(_table(tmp_path, drop="back.block01"), _shapes(), NAMES, 32)
    with pytest.raises(LatencyTableError, match="measured at 64 px, this pack runs at 32 px"):
        predicted_cost_model(_table(tmp_path, resolution=64), _shapes(), NAMES, 32)


def test_only_a_restnet_bench_table_of_this_version_is_read(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"format": LATENCY_TABLE_FORMAT, "version": LATENCY_TABLE_VERSION + 1}))
    with pytest.raises(LatencyTableError, match="not a restnet-bench latency table"):
        LatencyTable(path)
    path.write_text("{not json")
    with pytest.raises(LatencyTableError, match="cannot read"):
        LatencyTable(path)


# ---- which device figure a variant gets ----

def _variant(kind: str = "stitched", sha: str = "sha-v", **timing) -> Built:
    files = [{"host_ms": 2.0, "threads": 2, "runtime": "executorch 1.5", "format": "pte", "sha256": sha, **timing}]
    sel = Selection(1.0, StitchPoint(0, 0), 0.9, 1.0, 0) if kind == "stitched" else None
    return Built(kind, nn.Identity(), "v", 1.0, 0.5, 1, 3_000_000, 0, InputSpec(32, (0.5,) * 3, (0.5,) * 3),
                 role="back" if kind == "anchor" else None, selection=sel, files=files)


def _request(**profile_changes) -> PackRequest:
    profile = load_profile("rpi4").with_overrides({"budgets.metric": "params", **profile_changes})
    return PackRequest(profile=profile, out=None, formats=("pte",))


def test_device_figure_precedence_measured_predicted_host_estimated_none(tmp_path):
    table = _table(tmp_path, variants={
        **_table(tmp_path).data["variants"], "sha-v": {"p50_ms": 7.0, "runs": 9, "runtime": "en 1.0"}})
    pred = predicted_cost_model(table, _shapes(), NAMES, 32)
    req = _request()
    assert req.profile.latency_estimate is not None and not req.profile.is_host

    host, dev = DeviceLatency(req, table, pred)(_variant())  # the table measured this very file
    assert host["where"] == "host" and host["ms"] == 2.0 and "medians of 9 short bursts" in host["method"]
    assert (dev["source"], dev["ms"], dev["where"], dev["threads"]) == ("measured", 7.0, "pi", 4)

    _, dev = DeviceLatency(req, table, pred)(_variant(sha="sha-other"))  # not this file: predicted
    assert (dev["source"], dev["ms"]) == ("predicted", pytest.approx(pred(StitchPoint(0, 0))))
    _, dev = DeviceLatency(req, table, pred)(_variant("anchor", sha="sha-other"))  # an anchor by its role
    assert (dev["source"], dev["ms"]) == ("predicted", pytest.approx(pred.anchor_cost("back")))

    k = req.profile.latency_estimate.host_scale  # no table: the profile's estimate
    _, dev = DeviceLatency(req, None, None)(_variant())
    assert (dev["source"], dev["ms"], dev["where"]) == ("estimated", 2.0 * k, "rpi4")

    host_req = _request(is_host=True)  # this machine is the device: the host figure is the device's
    _, dev = DeviceLatency(host_req, None, None)(_variant())
    assert (dev["source"], dev["ms"], dev["where"]) == ("measured", 2.0, "rpi4")

    assert len(DeviceLatency(_request(latency_estimate=None), None, None)(_variant())) == 1  # nothing to say


def test_a_file_the_host_was_too_busy_to_time_is_estimated_from_its_macs_and_says_so():
    """A busy figure (2.0 ms from 2 clean bursts of 40) is an upper bound, not the file's speed: the host figure
    becomes MACs x the anchors' ms per MAC, marked estimated, for the host profile's device figure too."""
    busy = {"host_spread": 0.8, "host_clean": 2, "host_bursts": 40, "host_busy": True}
    host, dev = DeviceLatency(_request(is_host=True), None, None, per_mac=lambda: 0.25e-6)(_variant(**busy))
    assert (host["source"], host["ms"], host["spread"]) == ("estimated", pytest.approx(0.75), 0.8)
    assert "too busy to time this file" in host["method"] and "2 of 40 bursts clean" in host["method"]
    assert "MACs x 250 ms per GMAC" in host["method"] and (dev["source"], dev["ms"]) == ("estimated", host["ms"])
    clean = {"host_spread": 0.012, "host_clean": 9, "host_bursts": 11, "host_busy": False}
    host, _ = DeviceLatency(_request(is_host=True), None, None, per_mac=lambda: 1 / 0)(_variant(**clean))
    assert (host["source"], host["ms"], host["spread"]) == ("measured", 2.0, 0.012)  # per_mac never asked


def test_an_estimate_factor_is_used_as_given(tmp_path):
    req = _request(latency_estimate=LatencyEstimate(host_scale=3.0, source="test"))
    _, dev = DeviceLatency(req, None, None)(_variant())
    assert dev["ms"] == 6.0 and "x 3 (test)" in dev["method"]


# ---- timing that holds: rounds normalised by their speed, and the spread a pack reads ----

def test_each_round_is_normalised_by_the_speed_of_all_its_programs():
    from toolkit.timing import summarise

    # Files: the reference (0) and three others. Round 2 runs the whole process 1.5x slower; in round 3
    # only the reference is 1.5x slow (its own odd round): that must not move the others.
    fast = [[1.0, 1.0, 1.0], [0.4, 0.4, 0.4], [2.0, 2.0, 2.0], [1.0, 1.0, 1.0]]
    slow = [[1.5, 1.5, 1.5], [0.6, 0.6, 0.6], [3.0, 3.0, 3.0], [1.5, 1.5, 1.5]]
    odd = [[1.5, 1.5, 1.5], [0.4, 0.4, 0.4], [2.0, 2.0, 2.0], [1.0, 1.0, 1.0]]
    entries, ref = summarise([fast, slow, odd], ref=0)
    assert ref["round_speed"] == pytest.approx([1.0, 1.5, 1.0])
    assert ref["p50_ms"] == pytest.approx(1.0)  # the reference's median normalised p50: 1.0, 1.0, 1.5
    assert ref["round_p50_ms"] == [1.0, 1.5, 1.5] and ref["raw_spread"] == pytest.approx(0.5 / 3.0)
    assert entries[1]["p50_ms"] == pytest.approx(0.4) and entries[1]["spread"] == pytest.approx(0.0)
    assert entries[1]["raw_spread"] == pytest.approx((0.6 - 0.4) / (2 * 0.4))
    assert entries[0]["spread"] == pytest.approx(0.5 / 2.0)  # the reference's odd round shows in its own spread
    assert entries[1]["p50_ms"] <= entries[1]["p90_ms"] <= entries[1]["p99_ms"]


def test_the_table_spread_weighs_each_entry_by_its_time():
    from toolkit.formats import SPREAD_LIMIT, table_spread

    got = table_spread([{"p50_ms": 9.0, "spread": 0.01}, {"p50_ms": 1.0, "spread": 0.5}])
    assert got["spread"] == pytest.approx((9 * 0.01 + 1 * 0.5) / 10) and got["max_spread"] == 0.5
    assert got["spread_limit"] == SPREAD_LIMIT and got["trusted"] is (got["spread"] <= SPREAD_LIMIT)
    assert table_spread([{"p50_ms": 1.0, "spread": 2 * SPREAD_LIMIT}])["trusted"] is False


def test_a_pack_flags_a_table_too_noisy_to_trust_or_without_a_spread(tmp_path):
    from toolkit.formats import SPREAD_LIMIT

    table = _table(tmp_path)  # written like a 1.0 table: each file timed once, no spread recorded
    assert table.spread is None and "without a recorded spread" in table.trust_note()
    for spread, flagged in ((SPREAD_LIMIT / 2, False), (SPREAD_LIMIT * 3, True)):
        table.data["timing"] = {"spread": spread, "rounds": 5}
        note = table.trust_note()
        assert (note is not None and "FLAGGED" in note and "5 rounds" in note) if flagged else note is None


def test_the_overhead_and_memory_term_are_recovered_from_whole_programs():
    from restnet.package.latency import fit_corrections

    o, beta, knee = 0.02, 0.2, 2.5  # ms per extra program; ms per M params beyond 2.5 M params
    obs = []
    for parts_ms, n, size in [(1.0, 10, 1.0), (2.0, 20, 2.0), (2.5, 25, 3.0), (3.0, 22, 4.0), (4.0, 30, 5.0),
                              (3.5, 35, 6.0)]:
        obs.append((parts_ms - (n - 1) * o + beta * max(size - knee, 0), parts_ms, n, size))
    got = fit_corrections(obs)
    assert got == pytest.approx((o, beta, knee), abs=0.06 * 6 / 60 + 1e-9)  # knee on a 61-point grid to 6 M


def test_calibration_probes_refit_the_prediction(tmp_path):
    """Whole stitched programs in the table (stitched.iII.jJJ) replace the anchors-only overhead fit."""
    from toolkit.formats import stitched_name, stitched_point

    assert stitched_point(stitched_name(3, 12)) == (3, 12) and stitched_point("stitch.nchw4x8x8-nchw6x8x8") is None
    table = _table(tmp_path)
    shapes = _shapes()  # 1 param per part: every program is far below any knee, so only o shows
    blocks = table.data["blocks"]
    for i, j in ((0, 0), (1, 0), (1, 1)):
        parts = sum(list(FRONT_PARTS.values())[: i + 2]) + STITCH_MS + sum(list(BACK_PARTS.values())[j + 2:])
        n = i + 2 - j + 3
        blocks[stitched_name(i, j)] = {"p50_ms": parts - (n - 1) * 2 * OVERHEAD}  # twice the anchors' overhead
    for v in table.data["variants"].values():
        v["p50_ms"] -= 3 * OVERHEAD  # the anchors too: 2 x OVERHEAD per extra program
    cm = predicted_cost_model(table, shapes, NAMES, 32)
    assert cm.offset == pytest.approx(2 * OVERHEAD) and "fitted on 5 whole programs" in cm.source
    assert cm(StitchPoint(0, 1)) == pytest.approx(1.0 + 2.0 + STITCH_MS + 0.3 - 3 * 2 * OVERHEAD)


class _Arch(nn.Sequential):
    """An architecture as host_pte sees one: a module with a name."""

    name = "tiny-arch"


def test_an_anchors_timing_file_is_lowered_once_and_again_when_damaged(cache, monkeypatch):
    """A figure the host was too busy to take is not cached, so the next pack times the anchor again: from the
    cached .pte, not from another lowering; a file whose sha256 no longer matches is lowered again."""
    import torch

    from restnet.export import pte
    from restnet.package import latency

    lowered = []
    real = pte.export
    monkeypatch.setattr(pte, "export", lambda *a: (lowered.append(a[2]), real(*a))[1])
    torch.manual_seed(0)
    model, x = _Arch(nn.Conv2d(3, 4, 3), nn.ReLU()).eval(), torch.zeros(1, 3, 8, 8)
    f = latency._timing_file(model, x)
    assert len(lowered) == 1 and f.is_file() and f.parent.parent == cache / "anchor-pte"
    assert latency._timing_file(model, x) == f and len(lowered) == 1
    f.write_bytes(f.read_bytes()[:-1] + b"\0")
    assert latency._timing_file(model, x) == f and len(lowered) == 2
    assert not [p.name for p in f.parent.iterdir() if p.name.endswith(".tmp")]
    assert pte.load(f)(x.numpy()).shape == (1, 4, 6, 6)
    other = latency._timing_file(_Arch(nn.Conv2d(3, 5, 3), nn.ReLU()).eval(), x)  # same name, another head
    assert other != f and len(lowered) == 3


def test_repeated_blocks_are_one_probe_program_and_nothing_else_is():
    """lite0's blocks 12-14 (192 channels in and out, stride 1, the skip) are one program; block 11, which
    changes the channels, and the same block at another input are not; weights play no part."""
    import torch

    from restnet.anchors import create_anchor
    from restnet.package.probes import anchor_parts, same_program

    parts = {idx: (mod, x) for _, part, idx, mod, x in anchor_parts("back", create_anchor(
        "tf_efficientnet_lite0", pretrained=False), 64) if part == "block"}
    key = {k: same_program(*parts[k]) for k in (11, 12, 13, 14)}
    assert key[12] == key[13] == key[14] != key[11]
    mod, x = parts[13]
    with torch.no_grad():
        next(mod.parameters()).add_(1.0)
    assert same_program(mod, x) == key[13]
    assert same_program(mod, torch.zeros(1, 192, 4, 4)) != key[13]

"""Host latency on a quiet and on a busy machine: how far the figures a latency pack decides on move.

For the default pair (lite2 -> lite0, 64 px, random weights: latency does not depend on them) each repeat runs
in a fresh process, once with the machine as it is ("quiet") and once with a CPU-bound process on every core at
the same priority (restnet.timing.busy_cores: "loaded"), and times:

  cleantime  the latency cost model a pack builds (restnet.cost: every part and stitching layer interleaved,
             bursts another job starved dropped, toolkit.cleantime; one thread, PROXY_THREADS);
  median     the plain baseline cleantime is judged against: each part's median of 15 runs, one part after
             the other, on --threads (the profile's);
  .pte       both anchors as XNNPACK .pte files on --threads: cleantime, and the plain median of 30 runs
             (the baseline).

Then the host profile's selection (three budgets between the anchors, window 0.25; Algorithm 1 on the cached
CKA matrix of the pair when there is one, else a seeded random one) runs on each cost model. Printed: per
condition and method, the anchors' costs, how far every point's cost and its place between the anchors moved
from the quiet runs' mean, the selections, and the time taken; a table and JSON.

  python benchmarks/busy_latency.py [--repeats 3] [--threads 2] [--resolution 64] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import emit  # noqa: E402

PAIR = ("tf_efficientnet_lite2", "tf_efficientnet_lite0")
RES = int(os.environ.get("BUSY_LATENCY_RESOLUTION", "64"))  # --resolution; children read it here
BUDGETS, WINDOW = 3, 0.25


def _archs():
    import torch

    from restnet.anchors import get_anchor
    from restnet.anchors.blocks import cut
    from restnet.anchors.stats import describe
    from restnet.training.adapt import timm_for_task

    out = []
    for name in PAIR:
        torch.manual_seed(0)
        m = cut(timm_for_task(name, 10, RES).eval(), name, get_anchor(name).family).eval()
        out.append((m, describe(m, RES)))
    return out


def _cka(la: int, lb: int) -> list[list[float]]:
    """The pair's CKA matrix from restnet's cache when its shape fits, else a seeded random one."""
    from restnet.paths import cache_dir

    for f in sorted(cache_dir("cka").glob(f"{PAIR[0]}--{PAIR[1]}-*.json")):
        m = json.loads(f.read_text())["matrix"]
        if len(m) == la and len(m[0]) == lb:
            return m
    return np.random.default_rng(0).random((la, lb)).tolist()


def _selections(cm, cka) -> tuple[list[str], list[bool]]:
    """The selected points as 'i,j' and whether the pack's log calls each a close call (restnet.package.budgets),
    or ['infeasible: ...'] when a budget fits no point (the error a pack stops with at 'check budgets')."""
    import torch

    from restnet.constraints import Window
    from restnet.package.budgets import describe_selections
    from restnet.selection import InfeasibleBudget, budgets_between, select_family

    fa, ba = cm.anchor_cost("front"), cm.anchor_cost("back")
    m, budgets = torch.tensor(cka, dtype=torch.float64), budgets_between(fa, ba, BUDGETS)
    try:
        sels = select_family(m, cm, budgets, cm.unit, PAIR, [Window(WINDOW)], min(fa, ba))
    except InfeasibleBudget as err:
        return [f"infeasible: {err}"], [False]
    lines = describe_selections(sels, budgets, m, cm, [Window(WINDOW)], PAIR)
    return [f"{s.point.i},{s.point.j}" for s in sels], ["close call" in line for line in lines]


def _one(threads: int, pte_dir: str) -> dict:
    """One repeat, in this (fresh) process: every method's figures."""
    import torch

    from restnet.cost import build_cost_model
    from restnet.export import pte
    from restnet.timing import clean_ms, measure_callable_ms, measure_ms, torch_threads

    (fm, fs), (bm, bs) = _archs()
    cka = _cka(len(fs.blocks), len(bs.blocks))
    out = {}
    t = time.perf_counter()
    cm = build_cost_model("latency", fm, bm, fs, bs, 3, cache=False)  # timed now, every run
    out["cleantime"] = {"seconds": time.perf_counter() - t, "source": cm.source, "note": cm.note,
                        "tolerance": cm.tolerance, "matrix": cm.matrix().tolist(),
                        "anchors": [cm.anchor_cost("front"), cm.anchor_cost("back")]}
    out["cleantime"]["selection"], out["cleantime"]["close"] = _selections(cm, cka)
    t = time.perf_counter()
    with torch_threads(threads), torch.no_grad():  # the baseline: each part's median of 15, one after another
        plain = {}
        for role, (m, s) in (("front", (fm, fs)), ("back", (bm, bs))):
            x, parts = torch.zeros(1, 3, RES, RES), []
            for p in [m.stem, *m.blocks, m.head]:
                parts.append(measure_ms(p, x, 15))
                x = p(x)
            plain[role] = parts
        stitches = {k: measure_ms(layer, torch.zeros(1, *k[0].shape), 15)
                    for k, layer in ((k, _stitch_layer(k)) for k in cm.stitch_table)}
    from restnet.cost import CostModel, PartCosts

    part = lambda v: PartCosts(v[0], v[1:-1], v[-1])  # noqa: E731
    om = CostModel("latency", part(plain["front"]), part(plain["back"]), cm.front_specs, cm.back_specs,
                   stitch_table=stitches)
    out["median"] = {"seconds": time.perf_counter() - t, "matrix": om.matrix().tolist(),
                     "anchors": [om.anchor_cost("front"), om.anchor_cost("back")]}
    out["median"]["selection"], out["median"]["close"] = _selections(om, cka)
    x = torch.zeros(1, 3, RES, RES).numpy()
    pte_out = {}
    for name in PAIR:
        run = pte.load(Path(pte_dir) / f"{name}.pte", threads)
        e = clean_ms(run, x)
        pte_out[name] = {"cleantime": e.ms, "spread": e.spread, "clean": e.clean, "bursts": e.bursts,
                         "median30": measure_callable_ms(run, x, 30)}
    out["pte"] = pte_out
    return out


def _stitch_layer(key):
    from restnet.stitching import StitchLayer

    return StitchLayer(*key, kernel_size=3).eval()


def _export_anchors(folder: Path) -> None:
    import torch

    from restnet.export import pte

    for (m, _), name in zip(_archs(), PAIR):
        pte.export(m, torch.zeros(1, 3, RES, RES), folder / f"{name}.pte")


def _run_child(threads: int, pte_dir: Path, loaded: bool) -> dict:
    from restnet.timing import busy_cores

    cmd = [sys.executable, __file__, "--one", str(threads), str(pte_dir)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    if not loaded:
        res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    else:
        with busy_cores(900):
            time.sleep(1.0)  # the load has started
            res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise SystemExit(res.stderr[-3000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def _moves(runs: list[dict], ref: dict) -> tuple[float, float]:
    """(largest |relative change| of any point's cost, largest |change| of its place between the anchors, as a
    fraction of the anchors' range) against ``ref`` (the quiet runs' mean)."""
    worst_cost = worst_pos = 0.0
    for r in runs:
        m = np.array(r["matrix"])
        worst_cost = max(worst_cost, float(np.abs(m / ref["matrix"] - 1).max()))
        pos = (m - min(r["anchors"])) / abs(r["anchors"][0] - r["anchors"][1])
        worst_pos = max(worst_pos, float(np.abs(pos - ref["pos"]).max()))
    return worst_cost, worst_pos


def _pairwise(runs: list[dict], others: list[dict]) -> str:
    """'median/p95' of |relative change| of a point's cost between two runs (each of ``runs`` against each of
    ``others``, not itself): how far a table timed again in a fresh process moves, the floor of a cost's
    tolerance (restnet.part_timing.BETWEEN_PROCESSES)."""
    moves = [np.abs(np.array(a["matrix"]) / np.array(b["matrix"]) - 1).ravel()
             for a in runs for b in others if a is not b]
    if not moves:
        return "-"
    m = np.concatenate(moves)
    m = m[np.isfinite(m)]
    return f"{np.median(m):.1%}/{np.percentile(m, 95):.1%}"


def _explained(runs: list[dict], ref: dict) -> str:
    """'k/n': of the n members whose pick differs from ``ref``'s (member by member, cheapest first), the k that
    one of the two logs calls a close call."""
    n = k = 0
    for r in runs:
        if r["selection"][0].startswith("infeasible") or ref["selection"][0].startswith("infeasible"):
            continue
        for a, b, ca, cb in zip(r["selection"], ref["selection"], r["close"], ref["close"]):
            n += a != b
            k += a != b and (ca or cb)
    return f"{k}/{n}"


def _summary(results: dict) -> tuple[list[dict], list[dict]]:
    rows, pte_rows = [], []
    for method in ("cleantime", "median"):
        quiet = [r[method] for r in results["quiet"]]
        ref_m = np.mean([r["matrix"] for r in quiet], axis=0)
        ref_a = np.mean([r["anchors"] for r in quiet], axis=0)
        ref = {"matrix": ref_m, "pos": (ref_m - ref_a.min()) / abs(ref_a[0] - ref_a[1])}
        base = quiet[0]["selection"]
        for cond in ("quiet", "loaded"):
            runs = [r[method] for r in results[cond]]
            cost, pos = _moves(runs, ref)
            rows.append({"method": method, "condition": cond, "runs": len(runs),
                         "lite2 ms": "/".join(f"{r['anchors'][0]:.2f}" for r in runs),
                         "lite0 ms": "/".join(f"{r['anchors'][1]:.2f}" for r in runs),
                         "max point move": f"{cost:.1%}", "max place move": f"{pos:.1%}",
                         "point move vs quiet runs (median/p95)": _pairwise(runs, quiet),
                         "tolerance": "/".join(f"{r['tolerance']:.1%}" for r in runs) if method == "cleantime" else "-",
                         "estimated": sum(1 for r in runs if r.get("note")) if method == "cleantime" else "-",
                         "same picks as quiet #1": f"{sum(r['selection'] == base for r in runs)}/{len(runs)}",
                         "other picks, close calls": _explained(runs, quiet[0]),
                         "infeasible": sum(r["selection"][0].startswith("infeasible") for r in runs),
                         "seconds": "/".join(f"{r['seconds']:.0f}" for r in runs)})
    for name in PAIR:
        for cond in ("quiet", "loaded"):
            ps = [r["pte"][name] for r in results[cond]]
            pte_rows.append({"file": name, "condition": cond,
                             "cleantime ms": "/".join(f"{p['cleantime']:.3f}" for p in ps),
                             "spread": "/".join("?" if p["spread"] is None else f"{p['spread']:.1%}" for p in ps),
                             "clean bursts": "/".join(f"{p['clean']}/{p['bursts']}" for p in ps),
                             "median of 30 ms": "/".join(f"{p['median30']:.3f}" for p in ps)})
    return rows, pte_rows


def main() -> None:
    global RES
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        print(json.dumps(_one(int(sys.argv[2]), sys.argv[3])))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--resolution", type=int, default=RES, help="input size in px (the tests' tiny packs: 32)")
    ap.add_argument("--json")
    a = ap.parse_args()
    RES = a.resolution
    os.environ["BUSY_LATENCY_RESOLUTION"] = str(RES)
    results = {"quiet": [], "loaded": []}
    with tempfile.TemporaryDirectory() as d:
        _export_anchors(Path(d))
        for r in range(a.repeats):
            for cond in ("quiet", "loaded"):  # alternated, so a slow phase of the machine hits both alike
                results[cond].append(_run_child(a.threads, Path(d), cond == "loaded"))
                c = results[cond][-1]["cleantime"]
                print(f"repeat {r + 1}/{a.repeats} {cond}: cost model {c['seconds']:.0f} s, {c['source']}, picks "
                      f"{c['selection']}; load average {os.getloadavg()[0]:.1f}", file=sys.stderr)
    rows, pte_rows = _summary(results)
    facts = {"cpu_count": os.cpu_count(), "threads": a.threads, "resolution": RES, "pair": PAIR,
             "loadavg_at_end": os.getloadavg()}
    emit("anchors' .pte, quiet vs busy_cores", pte_rows, {}, None)
    emit("latency cost model, quiet vs busy_cores (fresh process per run)", rows, {"pte": pte_rows, **facts}, None)
    if a.json:  # with every run's figures, matrices included
        Path(a.json).write_text(json.dumps({"rows": rows, "pte": pte_rows, **facts, "raw": results}, indent=1))


if __name__ == "__main__":
    main()

"""Reproduce the paper's CIFAR-10 claims with restnet's own cached stages, and write docs/reproduction.md.

    .venv/bin/python benchmarks/reproduce.py --quick     # this 2-core CPU: <= 30 min after restnet-pack's run
    .venv/bin/python benchmarks/reproduce.py             # full: more budgets, points and stitch images

What is measured (the paper's table or figure in brackets), on two pairs with offline ImageNet weights,
tf_efficientnet_lite2 -> tf_efficientnet_lite0 (the default) and tf_efficientnet_lite2 -> mobilenetv2_100:

* [Table I]   the family over N budgets (MACs, Algorithm 1 with the shipped window) with both anchors:
              params, MACs, host .pte latency, trainable params, val and test top-1;
* [Table III] Slow-to-Fast against Fast-to-Slow at the same budgets (default pair);
* [Table IV]  the four training strategies on one member (the Table I member with the best val top-1);
* [Fig. 4]    CKA at the stitch point against the test top-1 it reaches, >= 12 points spread over the
              CKA range, Spearman rho and p; the same for the least-squares probe score (rerank);
* [Fig. 3]    which blocks each member keeps; [Fig. 5] CKA heatmaps of each anchor with itself and the other.

Every stage is restnet.pipeline's (adapt, CKA, select, train, all cached in $RESTNET_CACHE), so a second
run only re-times and re-writes. Decisions (the Table IV member, the probe score) look at the validation
images carved from the training split; every reported top-1 is on the official test split unless a
column says val.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import _common
import torch

from restnet.anchors.stats import count_flops, count_params
from restnet.export import pte
from restnet.paths import cache_dir
from restnet.pipeline import CKAConfig, Experiment, Runner
from restnet.pipeline.cka import cka_tensor
from restnet.constraints import Window
from restnet.selection import InfeasibleBudget, budgets_between, select
from restnet.stitching import StitchedModel, StitchPoint
from restnet.timing import measure_callable_ms
from restnet.training.adapt import AdaptConfig
from restnet.training.evaluate import accuracy
from restnet.training.stitch import STRATEGIES, trainable_params

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PAIR = ("tf_efficientnet_lite2", "tf_efficientnet_lite0")
SECOND_PAIR = ("tf_efficientnet_lite2", "mobilenetv2_100")
METRIC, WINDOW = "flops", 0.25  # the pack's cost metric (MACs) and selection window


@dataclass(frozen=True)
class Mode:
    """How much of each experiment runs. The anchors are always the pack's (30,000 images, 1 epoch, 64 px)."""

    name: str
    budgets: int  # Table I budgets between the anchors
    directions: int  # Table III: the middle budgets of Table I compared in both directions
    family_images: int  # stitch-training images, Tables I and III (2 epochs each)
    strategy_images: int  # Table IV
    points: int  # Fig. 4
    point_images: int  # Fig. 4
    second_images: int | None = None  # Table I's second pair (None: family_images)
    val_images: int | None = None  # val top-1 and the least-squares guard (None: all 5,000)
    test_images: int | None = None  # test top-1, Tables I, III, IV (None: all 10,000)
    point_test_images: int | None = None  # test top-1, Fig. 4
    epochs: int = 2
    latency_runs: int = 30
    threads: int = 2
    smoke: bool = False  # random weights on a slice of the data: checks this script end to end in minutes


MODES = {
    # Eager evaluation dominates on 2 cores (~3.6 ms an image at 64 px): quick mode scores on seeded subsets.
    "quick": Mode("quick", budgets=5, directions=3, family_images=3000, strategy_images=1500, points=12,
                  point_images=1000, second_images=1500, val_images=1000, test_images=3000,
                  point_test_images=2000, latency_runs=10),
    "full": Mode("full", budgets=7, directions=7, family_images=10000, strategy_images=10000, points=16,
                 point_images=10000),
    "smoke": Mode("smoke", budgets=5, directions=3, family_images=256, strategy_images=128, points=12,
                  point_images=128, epochs=1, latency_runs=3, smoke=True),
}


def experiment(mode: Mode, front: str, back: str, images: int, seed: int) -> Experiment:
    exp = replace(Experiment(), front=front, back=back, stitch_train_size=images, seed=seed)
    if mode.smoke:
        exp = replace(exp, pretrained=False, adapt=AdaptConfig(method="probe", seed=seed), train_size=256,
                      val_size=100, test_size=100, cka=CKAConfig("hsic", 16, 2), resolution=32)
    return exp


class Study:
    """Runners for one mode, one per (pair, stitch-training size); anchors and CKA are shared via the cache."""

    def __init__(self, mode: Mode, seed: int):
        self.mode, self.seed, self.t0, self.stages = mode, seed, time.perf_counter(), {}
        self._runners: dict[tuple, Runner] = {}

    def log(self, msg: str) -> None:
        print(f"[{time.perf_counter() - self.t0:7.1f} s] {msg}", flush=True)

    def runner(self, front: str, back: str, images: int) -> Runner:
        key = (front, back, images)
        if key not in self._runners:
            self._runners[key] = Runner(experiment(self.mode, front, back, images, self.seed), log=self.log)
        return self._runners[key]

    def stage(self, name: str, fn, *args):
        t = time.perf_counter()
        self.log(f"== {name}")
        out = fn(*args)
        self.stages[name] = time.perf_counter() - t
        self.log(f"== {name}: {self.stages[name]:.0f} s")
        return out


def pte_ms(model: torch.nn.Module, resolution: int, threads: int, runs: int) -> float:
    """Host latency of the model as an XNNPACK .pte run by the ExecuTorch runtime (batch 1, median)."""
    x = torch.zeros(1, 3, resolution, resolution)
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "m.pte"
        pte.export(model.eval(), x, f)
        return measure_callable_ms(pte.load(f, threads), x.numpy(), runs=runs)


def val_top1(study: Study, r: Runner, model: torch.nn.Module, spec) -> float:
    """Top-1 on the mode's seeded subset of the validation images (what decisions look at)."""
    return accuracy(model, r.task.loader(r.task.val.subset(study.mode.val_images, r.exp.seed + 17), spec, 250),
                    desc="val")


def test_top1(study: Study, r: Runner, model: torch.nn.Module, spec, n: int | None = None) -> float:
    """Top-1 on the official test split, or on a seeded subset of n of its images (the same for every model)."""
    if n is None:
        return r.report_accuracy(model, spec)
    return accuracy(model, r.task.loader(r.task.report.subset(n, r.exp.seed + 29), spec, 250), desc="test")


def score(study: Study, r: Runner, model: torch.nn.Module, spec, strategy: str = "stitch",
          latency: bool = True, val: bool | float = True) -> dict:
    """Params, MACs, trainable params, test top-1, and val top-1 (where a decision needs it; a float:
    already known) and .pte latency (Table I) of one model."""
    x = torch.zeros(1, 3, r.exp.resolution, r.exp.resolution)
    if val is True:
        val = val_top1(study, r, model, spec)
    row = {"params": count_params(model), "macs": int(count_flops(model.eval(), x)[""]),
           "trainable": trainable_params(model, strategy) if isinstance(model, StitchedModel) else None,
           "val_top1": val if val is not False else None,
           "test_top1": test_top1(study, r, model, spec, study.mode.test_images)}
    if latency:
        row["pte_ms"] = pte_ms(model, r.exp.resolution, study.mode.threads, study.mode.latency_runs)
    return row


def pick(r: Runner, budgets: list[float], only: list[float] | None = None) -> list:
    """Algorithm 1 with the shipped window for each budget (floors from the whole list, so a subset of
    budgets picks what the whole list would); a slice with no point falls back to the plain algorithm."""
    cm = r.cost_model(METRIC)
    m, names = cka_tensor(r.cka()), (r.exp.front, r.exp.back)
    out = []
    for b in sorted(budgets):
        if only is not None and b not in only:
            continue
        try:
            out.append((select(m, cm, b, cm.unit, names, [Window(WINDOW)], budgets, min(cm.anchor_costs())), True))
        except InfeasibleBudget:
            out.append((select(m, cm, b, cm.unit, names), False))
    return out


def guarded(study: Study, r: Runner, point: StitchPoint, cfg) -> tuple[StitchedModel, dict]:
    """Train a member, but keep its least-squares stitch when training lowers val top-1 (the paper's
    lr 0.01 can wreck a good least-squares start on some pairs: the first steps' losses show it).
    Returns the model and what was kept, with both val scores and the first two steps' losses."""
    model = r.build(point)
    start = {k: v.clone() for k, v in model.stitch.state_dict().items()}
    ls_val = val_top1(study, r, model, r.front.spec)
    res = r.train(point, cfg, model=model)
    trained_val = val_top1(study, r, res.model, r.front.spec)
    steps = [x for e in res.history for x in e.get("step_losses", [])][:2]
    kept = "trained" if trained_val >= ls_val else "least squares"
    if kept != "trained":
        res.model.stitch.load_state_dict(start)
    study.log(f"{point.label(r.exp.front, r.exp.back)}: val LS {ls_val:.2%}, trained {trained_val:.2%} "
              f"({res.seconds:.0f} s): {kept} kept")
    return res.model, {"kept": kept, "ls_val": ls_val, "trained_val": trained_val, "first_steps": steps,
                       "val_top1": max(ls_val, trained_val)}


def family(study: Study, pair: tuple[str, str]) -> dict:
    """Table I: both anchors and one member per budget."""
    images = study.mode.second_images if pair != DEFAULT_PAIR and study.mode.second_images else \
        study.mode.family_images
    r = study.runner(*pair, images)
    cm = r.cost_model(METRIC)
    budgets = budgets_between(*cm.anchor_costs(), study.mode.budgets)
    cfg = r.train_config(epochs=study.mode.epochs)
    rows = []
    for role, anchor in (("front", r.front), ("back", r.back)):
        rows.append({"model": anchor.model.name, "role": f"anchor ({role})",
                     **score(study, r, anchor.model, anchor.spec, val=anchor.accuracy)})
    seen = set()
    for sel, windowed in pick(r, budgets):
        if sel.point in seen:
            continue
        seen.add(sel.point)
        model, guard = guarded(study, r, sel.point, cfg)
        rows.append({"model": sel.point.label(*pair), "role": "member", "i": sel.point.i, "j": sel.point.j,
                     "budget": sel.budget, "cka": sel.cka, "windowed": windowed, **guard,
                     **score(study, r, model, r.front.spec, val=guard["val_top1"])})
    rows.sort(key=lambda x: x["macs"])
    return {"pair": list(pair), "budgets": budgets, "train": asdict(cfg), "images": len(r.stitch_task.train),
            "rows": rows, "blocks": [r.front.model.num_blocks, r.back.model.num_blocks]}


def directions(study: Study, table1: dict) -> dict:
    """Table III: Fast-to-Slow (small model first) at the middle budgets of Table I, against Table I's
    Slow-to-Fast members at the same budgets (the same selection rule both ways)."""
    front, back = table1["pair"]
    budgets = table1["budgets"]
    k = study.mode.directions
    mid = budgets[(len(budgets) - k) // 2:][:k]
    r = study.runner(back, front, study.mode.family_images)  # swapped: the fast model first
    cfg = r.train_config(epochs=study.mode.epochs)
    s2f = {x["budget"]: x for x in table1["rows"] if x["role"] == "member"}
    rows = []
    for sel, windowed in pick(r, budgets, only=mid):
        model, guard = guarded(study, r, sel.point, cfg)
        f2s = {"model": sel.point.label(back, front), "cka": sel.cka, "windowed": windowed, **guard,
               **score(study, r, model, r.front.spec, latency=False, val=guard["val_top1"])}
        rows.append({"budget": sel.budget, "fast_to_slow": f2s, "slow_to_fast": s2f.get(sel.budget)})
    return {"pair": [front, back], "rows": rows, "train": asdict(cfg)}


def strategies(study: Study, table1: dict) -> dict:
    """Table IV: the Table I member with the best val top-1 (a decision: val), trained four ways on the
    same images; test top-1, trainable params, seconds per epoch."""
    pair = table1["pair"]
    members = [x for x in table1["rows"] if x["role"] == "member"]
    best = max(members, key=lambda x: x["val_top1"])
    point = StitchPoint(best["i"], best["j"])
    r = study.runner(*pair, study.mode.strategy_images)
    rows = []
    for strategy in STRATEGIES:
        res = r.train(point, r.train_config(strategy=strategy, epochs=study.mode.epochs))
        per_epoch = [e["seconds"] for e in res.history if "seconds" in e]
        rows.append({"strategy": strategy, "s_per_epoch": sum(per_epoch) / len(per_epoch) if per_epoch else None,
                     "train_seconds": res.seconds if not res.resumed_from else None,
                     **score(study, r, res.model, r.front.spec, strategy, latency=False, val=False)})
        study.log(f"strategy {strategy}: {rows[-1]['test_top1']:.2%}")
    return {"pair": pair, "member": best["model"], "images": len(r.stitch_task.train), "rows": rows}


def spread_points(matrix: torch.Tensor, n: int) -> list[list[StitchPoint]]:
    """n stitch points at evenly spaced ranks of CKA (lowest to highest): the whole range, not the top.
    Each comes with its rank neighbours, nearest first, as stand-ins should it fail to build."""
    order = [StitchPoint(*divmod(int(k), matrix.shape[1])) for k in torch.argsort(matrix.flatten())]
    ranks = torch.linspace(0, len(order) - 1, n).round().long().tolist()
    near = [sorted(range(len(order)), key=lambda k: (abs(k - r), k)) for r in ranks]
    return [[order[k] for k in ks[:5]] for ks in near]


def probed(r: Runner, candidates: list[StitchPoint], probe, taken: set) -> tuple[StitchPoint, float, int,
                                                                                  StitchedModel]:
    """The first candidate whose least-squares stitch can be fitted, its probe top-1, how many were
    skipped (the fit can fail: torch.linalg raises when the design matrix is too ill-conditioned), and
    the fitted model."""
    for k, p in enumerate(c for c in candidates if c not in taken):
        try:
            model = r.build(p)
            return p, accuracy(model, r.task.loader(probe, r.front.spec, 250), desc="probe"), k, model
        except torch.linalg.LinAlgError as err:
            r.log(f"{p.label(r.exp.front, r.exp.back)}: least squares failed ({str(err)[:80]}), next point")
    raise RuntimeError(f"no least-squares fit among {[c.label() for c in candidates]}")


def stitch_points(study: Study, pair: tuple[str, str]) -> dict:
    """Fig. 4: CKA and the least-squares probe score (rerank: LS-initialised stitch, 500 val images)
    against the test top-1 each point reaches after training."""
    from scipy.stats import spearmanr

    r = study.runner(*pair, study.mode.point_images)
    m = cka_tensor(r.cka())
    cfg = r.train_config(epochs=study.mode.epochs)
    probe = r.task.val.subset(500, r.exp.seed + 13)  # the rerank's images
    rows, taken = [], set()
    for candidates in spread_points(m, study.mode.points):
        p, ls, skipped, model = probed(r, candidates, probe, taken)
        taken.add(p)
        res = r.train(p, cfg, model=model)  # the probe's least-squares fit is the training's start
        rows.append({"model": p.label(*pair), "i": p.i, "j": p.j, "cka": float(m[p.i, p.j]), "probe": ls,
                     "skipped": skipped,
                     "test_top1": test_top1(study, r, res.model, r.front.spec, study.mode.point_test_images)})
        study.log(f"point {rows[-1]['model']}: CKA {rows[-1]['cka']:.3f}, probe {ls:.2%}, "
                  f"test {rows[-1]['test_top1']:.2%}")
    out = {"pair": list(pair), "images": len(r.stitch_task.train), "rows": rows}
    for key in ("cka", "probe"):
        rho, p = spearmanr([x[key] for x in rows], [x["test_top1"] for x in rows])
        out[f"rho_{key}"], out[f"p_{key}"] = float(rho), float(p)
    return out


def heatmaps(study: Study, pair: tuple[str, str]) -> dict:
    """Fig. 5: CKA of each anchor with itself and with the other (same images, same estimator)."""
    a, b = pair
    out = {}
    for f, k in ((a, a), (b, b), (a, b)):
        res = study.runner(f, k, study.mode.family_images).cka()
        out[f"{f}|{k}"] = {"matrix": res["matrix"], "estimator": res["estimator"],
                           "batch": res["batch_size"], "repeats": res["repeats"]}
    return out


def machine() -> dict:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                capture_output=True, text=True).stdout.strip())
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
            "commit": commit + ("+uncommitted changes" if dirty else ""), "load_start": os.getloadavg(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}


def cached_at_start() -> dict:
    """What the cache already held when the run began (the duration depends on it): adapted anchors,
    CKA matrices, trained variants and front-feature files, by name or count."""
    names = {k: sorted(f.name for f in cache_dir(k).iterdir()) for k in ("task-anchors", "cka")}
    return {"anchors": [n.rsplit("-", 1)[0] for n in names["task-anchors"]],
            "cka": [n.rsplit("-", 1)[0] for n in names["cka"]],
            "variants": sum(1 for _ in cache_dir("variants").iterdir()),
            "front_features": sum(1 for _ in cache_dir("front-features").glob("*.npy"))}


def run(mode: Mode, seed: int, command: str) -> dict:
    env = {**_common.setup_threads(mode.threads), **machine(), "cached_at_start": cached_at_start()}
    study = Study(mode, seed)
    res = {"mode": asdict(mode), "seed": seed, "env": env, "command": command}
    res["table1"] = [study.stage(f"Table I {a} -> {b}", family, study, (a, b)) for a, b in (DEFAULT_PAIR,
                                                                                          SECOND_PAIR)]
    res["table3"] = study.stage("Table III", directions, study, res["table1"][0])
    res["table4"] = study.stage("Table IV", strategies, study, res["table1"][0])
    res["fig4"] = study.stage("Fig. 4", stitch_points, study, DEFAULT_PAIR)
    res["fig5"] = [study.stage(f"Fig. 5 {a} / {b}", heatmaps, study, (a, b)) for a, b in (DEFAULT_PAIR, SECOND_PAIR)]
    res["stages"], res["seconds"] = study.stages, time.perf_counter() - study.t0
    res["env"]["load_end"] = os.getloadavg()
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the CPU-sized run (see Mode)")
    ap.add_argument("--smoke", action="store_true", help="random weights, tiny data: checks the script only")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "docs" / "reproduction.md"))
    ap.add_argument("--json", default=None, help="where every number goes [default: the restnet cache]")
    ap.add_argument("--render", metavar="JSON", default=None, help="only write the report from a saved run")
    args = ap.parse_args()
    from _reproduce_report import write

    if args.render:
        res = json.loads(Path(args.render).read_text())
    else:
        mode = MODES["smoke" if args.smoke else "quick" if args.quick else "full"]
        command = "python benchmarks/reproduce.py" + {"quick": " --quick", "smoke": " --smoke"}.get(mode.name, "") \
            + (f" --seed {args.seed}" if args.seed else "")
        res = run(mode, args.seed, command)
        saved = Path(args.json) if args.json else cache_dir("reproduce") / f"{mode.name}-seed{args.seed}.json"
        saved.write_text(json.dumps(res, indent=1, default=str))  # first: a report bug must not lose the run
        print(f"results in {saved}", flush=True)
    write(res, Path(args.out))
    print(f"wrote {args.out} ({res['seconds'] / 60:.1f} min run)", flush=True)


if __name__ == "__main__":
    sys.exit(main())

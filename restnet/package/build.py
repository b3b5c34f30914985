"""restnet-pack: a device profile in, a verified per-device package out.

Stages (each reuses its cache, see restnet.pipeline): check the budgets
against the architectures (cheap, so a bad request fails before any heavy
work), adapt the anchors, CKA, select (Algorithm 1), train the stitching
layers (Algorithm 2), evaluate, export + verify every file in its own
runtime, then write the package (atomically: see restnet.package.writer).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from restnet import __version__
from restnet.anchors.stats import count_flops, count_params
from restnet.cost import UNITS, CostModel
from restnet.data import to_model_input
from restnet.package import manifest as mf
from restnet.package.exports import int8_file, verified_file
from restnet.package.writer import staged_dir
from restnet.paths import cache_dir
from restnet.pipeline import Runner
from restnet.profiles import Profile, ProfileError
from restnet.selection import Selection, budgets_between, select_family
from restnet.training import checkpoint
from restnet.training.evaluate import accuracy
from restnet.training.stitch import trainable_params

BACKEND_FORMAT = {"executorch-xnnpack": "pte", "tflite": "tflite"}
STAGES = ("check budgets", "adapt anchors", "CKA", "select", "train stitches", "evaluate", "export + verify",
          "write package")
# First-run guesses for the ETA (seconds, default pair, this 2-core machine); later runs use the last run's.
FIRST_RUN_SECONDS = {"check budgets": 5, "adapt anchors": 250, "CKA": 30, "select": 2, "train stitches": 200,
                     "evaluate": 30, "export + verify": 150, "write package": 10}
RUNTIME_OVERHEAD_MB = 8.0


@dataclass
class PackRequest:
    profile: Profile
    out: Path
    formats: tuple[str, ...]  # the backend's format first
    metric: str
    budgets: tuple[float, ...] = ()  # absolute, in the metric's unit; empty = `between` budgets
    between: int = 3
    band: float = 0.0
    threads: int = 1  # host measurement threads
    include_anchors: bool = True
    train_overrides: dict = field(default_factory=dict)
    probes: bool = False  # also ship per-block programs (restnet-bench --blocks)
    int8: bool = False  # also ship int8 files (PT2E) with their agreement with fp32
    latency_table: Path | None = None  # a device table from restnet-bench

    @property
    def latency_scale(self) -> float | None:
        """None when latency is measured here; the profile's factor when it is estimated."""
        p = self.profile
        if p.is_host or self.latency_table is not None:
            return None
        return p.latency_estimate.host_scale if p.latency_estimate else None

    @property
    def int8_formats(self) -> tuple[str, ...]:
        """The requested formats that have an int8 route (restnet.export.int8), when int8 is on."""
        from restnet.export.int8 import routes

        return tuple(f for f in self.formats if f in routes()) if self.int8 else ()

    def check(self) -> None:
        p = self.profile
        if self.int8 and not self.int8_formats:
            from restnet.export.int8 import routes

            raise ProfileError(f"profile {p.name}: int8 is available for the formats {', '.join(routes())}, "
                               f"not for {', '.join(self.formats)}; use --no-int8 or another format")
        if self.metric == "latency" and not p.is_host and p.latency_estimate is None and self.latency_table is None:
            raise ProfileError(f"profile {p.name}: cost metric 'latency' needs a measured table, 'is_host: true' "
                               "or 'latency_estimate: {host_scale, source}'; or use --metric params|flops")


class Stages:
    """Says which stage runs and how long is left at most (the slowest time seen per stage)."""

    def __init__(self, log: Callable[[str], None], names=STAGES):
        self.log, self.names = log, list(names)
        self.path = cache_dir() / "pack-stage-seconds.json"
        try:
            self.expected = {**FIRST_RUN_SECONDS, **json.loads(self.path.read_text())}
        except (OSError, ValueError):
            self.expected = dict(FIRST_RUN_SECONDS)
        self.took: dict[str, float] = {}
        self.t0 = time.perf_counter()

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        k = self.names.index(name)
        left = sum(self.expected.get(n, 0) for n in self.names[k:])
        self.log(f"[{k + 1}/{len(self.names)}] {name} (elapsed {self._fmt(time.perf_counter() - self.t0)}; "
                 f"at most ~{self._fmt(left)} left, by the slowest runs so far; far less when cached)")
        t = time.perf_counter()
        yield
        self.took[name] = time.perf_counter() - t

    def save(self) -> None:
        """Keep the slowest time seen per stage: the ETA is an upper bound, cold or warm."""
        slowest = {n: max(self.expected.get(n, 0), self.took.get(n, 0)) for n in {*self.expected, *self.took}}
        checkpoint.atomic_write_json(slowest, self.path)

    @staticmethod
    def _fmt(s: float) -> str:
        return f"{s / 60:.1f} min" if s >= 90 else f"{s:.0f} s"


@dataclass
class Built:
    """One variant (stitched or anchor) with everything the manifest needs."""

    kind: str
    model: nn.Module
    name: str
    cost: float
    accuracy: float
    params: int
    flops: int
    trainable: int
    selection: Selection | None = None
    files: list[dict] = field(default_factory=list)
    activation_bytes: int = 0


def largest_activation_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """The largest tensor any submodule outputs for ``x`` (float32): the peak-RAM estimate's core."""
    sizes = [x.numel() * 4]

    def hook(_m, _i, out):
        if isinstance(out, torch.Tensor):
            sizes.append(out.numel() * out.element_size())

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return max(sizes)


def _eval_cached(runner: Runner, model: nn.Module, spec, digest: str) -> float:
    path = cache_dir("evals") / f"{digest}-{runner.task.val.fingerprint()}-{runner.exp.resolution}.json"
    if path.is_file():
        return json.loads(path.read_text())["accuracy"]
    acc = accuracy(model, runner.task.loader(runner.task.val, spec, 128))
    checkpoint.atomic_write_json({"accuracy": acc}, path)
    return acc


def _variant_id(profile: str, metric: str, cost: float, acc: float, taken: set[str]) -> str:
    c = {"params": f"params@{cost / 1e6:.2f}M", "flops": f"flops@{cost / 1e6:.0f}M",
         "latency": f"lat@{cost:.1f}ms"}[metric]
    base = f"{profile}_{c}_top1@{acc * 100:.1f}"
    vid, k = base, 2
    while vid in taken:
        vid, k = f"{base}-{k}", k + 1
    taken.add(vid)
    return vid


def plan_budgets(runner: Runner, req: PackRequest, cm: CostModel) -> list[float]:
    """Absolute budgets, and proof that each one has a feasible point (Algorithm 1 on a blank CKA
    matrix raises the same InfeasibleBudget, naming the cheapest variant, that the real run would)."""
    fa, ba = runner.anchor_costs(cm)
    budgets = list(req.budgets) or budgets_between(fa, ba, req.between)
    blank = torch.zeros(len(cm.front.blocks), len(cm.back.blocks), dtype=torch.float64)
    select_family(blank, cm, budgets, cm.unit, (runner.exp.front, runner.exp.back), req.band)
    return budgets


def pack(runner: Runner, req: PackRequest, log: Callable[[str], None] = print) -> tuple[Path, dict]:
    """Run every stage; returns (package path, manifest)."""
    from restnet.latency_table import LatencyTable, predicted_cost_model

    req.check()
    table = LatencyTable(req.latency_table) if req.latency_table else None
    stages = Stages(log)
    exp, prof = runner.exp, req.profile
    with stages("check budgets"):
        pred = predicted_cost_model(table, runner, exp.resolution) if table and table.data.get("blocks") else None
        if req.metric == "latency" and pred is not None:
            cm = pred
        else:
            cm = runner.cost_model(req.metric, req.threads, req.latency_scale)
        budgets = plan_budgets(runner, req, cm)
        log(f"budgets ({cm.unit}, {cm.source}): " + ", ".join(f"{b:.4g}" for b in budgets)
            + (f"; band {req.band:g}" if req.band else ""))
    with stages("adapt anchors"):
        front, back = runner.front, runner.back
    with stages("CKA"):
        runner.cka()
    with stages("select"):
        sels = runner.select(budgets, cm, req.band)
        for s in sels:
            log(f"budget {s.budget:.4g} {cm.unit}: {s.point.label(exp.front, exp.back)} CKA {s.cka:.4f}, "
                f"cost {s.cost:.4g}")
    cfg = runner.train_config(**req.train_overrides)
    trained = []
    with stages("train stitches"):
        for s in sels:
            trained.append((s, runner.train(s.point, cfg).model.eval()))
    x = torch.zeros(1, 3, exp.resolution, exp.resolution)
    built: list[Built] = []
    with stages("evaluate"):
        for s, model in trained:
            acc = _eval_cached(runner, model, front.spec, checkpoint.state_digest(model))
            built.append(Built("stitched", model, model.describe(), s.cost, acc, count_params(model),
                               int(count_flops(model, x)[""]), trainable_params(model, cfg.strategy), s))
        if req.include_anchors:
            for a, stats, cost in ((front, runner.front_stats, cm.anchor_cost("front")),
                                   (back, runner.back_stats, cm.anchor_cost("back"))):
                built.append(Built("anchor", a.model, a.model.name, cost, a.accuracy, stats.params, stats.flops, 0))
    built.sort(key=lambda b: (b.cost, b.kind))
    taken: set[str] = set()
    ids = [_variant_id(prof.name, req.metric, b.cost, b.accuracy, taken) for b in built]

    def val_batches(spec):
        """(input, label) batches: every file's agreement with eager, and an int8 file's own accuracy."""
        return ((to_model_input(imgs, spec), y) for imgs, y in runner.task.raw_loader(runner.task.val, 250))

    from restnet.export import get_format
    from restnet.export.int8 import get_route

    calib = runner.task.train.subset(min(256, len(runner.task.train)), exp.seed + 17)  # int8 calibration images
    with staged_dir(req.out) as tmp:
        with stages("export + verify"):
            (tmp / "variants").mkdir()
            for b, vid in zip(built, ids):
                spec = _spec_of(runner, b)
                for fmt in req.formats:
                    rel = f"variants/{vid}{get_format(fmt).suffix}"
                    log(f"export {vid} -> {fmt}, verify on {len(runner.task.val)} validation images")
                    rec = verified_file(b.model, fmt, x, val_batches(spec), runner.task.val.fingerprint(),
                                        req.threads, tmp / rel)
                    b.files.append({"dtype": "fp32", **rec, "path": rel})
                for fmt in req.int8_formats:
                    route = get_route(fmt)
                    rel = f"variants/{vid}{route.suffix}"
                    log(f"quantise {vid} -> int8 {fmt} ({route.quantizer}), check agreement with fp32")
                    rec = int8_file(b.model, fmt, x, (to_model_input(i, spec) for i, _ in
                                                      runner.task.raw_loader(calib, 64)), calib.fingerprint(),
                                    val_batches(spec), runner.task.val.fingerprint(), req.threads, tmp / rel)
                    if rec["flagged"]:
                        log(f"[yellow]int8 {vid} ({fmt}): top-1 agreement with fp32 {rec['top1_agreement']:.2%} "
                            "< 98 %: flagged[/]")
                    b.files.append({**rec, "path": rel})
                b.activation_bytes = largest_activation_bytes(b.model, x)
            # Eager logits on a fixed image set, per shipped file, into the cache (not the package):
            # what `scripts/aarch64-standin.sh check` compares another machine's outputs with.
            from restnet.package import reference

            reference.store(runner, [(b.model, _spec_of(runner, b), b.files) for b in built])
            probes = None
            if req.probes:
                from restnet.package.probes import export_probes

                probes = export_probes(runner, req.formats[0], tmp, req.threads, log)
        with stages("write package"):
            device = DeviceLatency(req, table, pred, runner)
            manifest = build_manifest(runner, req, cm, budgets, built, ids, device)
            if probes:
                manifest["probes"] = probes
            mf.Manifest.model_validate(manifest)
            if table is not None:
                shutil.copyfile(table.path, tmp / "latency-table.json")
            write_package_files(tmp, runner, manifest)
    stages.save()
    log(f"package written in {time.perf_counter() - stages.t0:.0f} s")
    return req.out, manifest


def _spec_of(runner: Runner, b: Built):
    """Stitched variants and the front anchor take the front's input; the back anchor its own."""
    return runner.back.spec if b.model is runner.back.model else runner.front.spec


def _input_info(spec, resolution: int) -> dict:
    return {"shape": [1, 3, resolution, resolution], "layout": "NCHW", "dtype": "float32", "color": "RGB",
            "scale": 1 / 255, "mean": list(spec.mean), "std": list(spec.std),
            "resize": {"size": [resolution, resolution], "interpolation": spec.interpolation, "antialias": True,
                       "grayscale": "replicate to 3 channels"}}


class DeviceLatency:
    """The device figure for a variant: measured (table has its file) > predicted (table has the
    blocks) > measured here (host profile) > estimated (profile factor) > none."""

    def __init__(self, req: PackRequest, table, pred: CostModel | None, runner: Runner):
        self.req, self.table, self.pred, self.runner = req, table, pred, runner

    def __call__(self, b: Built) -> list[dict]:
        main = b.files[0]
        host = {"ms": main["host_ms"], "source": "measured", "where": "host", "threads": main["threads"],
                "runtime": main["runtime"],
                "method": f"median of 30 runs after 3 warm-up, batch 1, {main['format']} file"}
        p, t = self.req.profile, self.table
        if t is not None and (m := t.measured(main["sha256"])):
            return [host, {"ms": m["p50_ms"], "source": "measured", "where": t.device,
                           "threads": t.data.get("threads", p.threads), "runtime": m.get("runtime", "?"),
                           "method": f"restnet-bench p50 of {m['runs']} runs ({t.path.name})"}]
        if self.pred is not None:
            if b.kind == "stitched":
                ms = self.pred(b.selection.point)
            else:
                ms = self.pred.anchor_cost("front" if b.model is self.runner.front.model else "back")
            return [host, {"ms": ms, "source": "predicted", "where": t.device, "threads": t.data.get("threads", 1),
                           "runtime": t.data.get("runtime", "?"), "method": self.pred.source}]
        if p.is_host:
            return [host, {**host, "where": p.name}]
        if p.latency_estimate:
            k = p.latency_estimate.host_scale
            return [host, {"ms": main["host_ms"] * k, "source": "estimated", "where": p.name, "threads": p.threads,
                           "runtime": main["runtime"],
                           "method": f"host-measured latency x {k:g} ({p.latency_estimate.source}); "
                                     "replace with restnet-bench measurements"}]
        return [host]


def build_manifest(runner: Runner, req: PackRequest, cm: CostModel, budgets: list[float], built: list[Built],
                   ids: list[str], device: DeviceLatency) -> dict:
    exp, prof, task = runner.exp, req.profile, runner.task
    front, back = runner.front, runner.back
    spec = front.spec
    variants = []
    for b, vid in zip(built, ids):
        main = b.files[0]
        peak = (main["size"] + 2 * b.activation_bytes) / 2**20 + RUNTIME_OVERHEAD_MB
        lat = device(b)
        device_ms = lat[-1]["ms"] if len(lat) > 1 else None
        fits = {"ram": peak <= prof.model_ram_mb,
                "compute": None if prof.compute_gflops is None else b.flops / 1e9 <= prof.compute_gflops,
                "latency": None if prof.latency_target_ms is None or device_ms is None
                else device_ms <= prof.latency_target_ms}
        v = {"id": vid, "kind": b.kind, "cost": b.cost, "params": b.params, "flops": b.flops,
             "trainable_params": b.trainable, "accuracy": b.accuracy, "latency": lat, "peak_ram_mb": round(peak, 2),
             "fits": fits,
             "files": [{k: f[k] for k in ("format", "path", "size", "sha256", "runtime", "input_layout",
                                          "max_abs_diff", "max_abs_logit", "scaled_diff", "top1_agreement",
                                          "dtype", "accuracy", "flagged") if k in f} for f in b.files]}
        if b.kind == "stitched":
            s, m = b.selection, b.model
            v.update(front={"anchor": exp.front, "blocks": [0, s.point.i]},
                     back={"anchor": exp.back, "blocks": [s.point.j + 1, len(cm.back.blocks) - 1]},
                     stitch={"type": f"{m.stitch.kind} {m.stitch.kernel_size}x{m.stitch.kernel_size}"
                             if m.stitch.kind != "linear" else "linear",
                             "kernel_size": m.stitch.kernel_size, "in_shape": list(m.stitch.src.shape),
                             "out_shape": list(m.stitch.dst.shape), "params": count_params(m.stitch)},
                     cka=s.cka)
        else:
            n = len(cm.front.blocks) if b.model is front.model else len(cm.back.blocks)
            v.update(front={"anchor": b.name, "blocks": [0, n - 1]})
            if _spec_of(runner, b) != spec:
                v["input"] = _input_info(_spec_of(runner, b), exp.resolution)
        variants.append(v)
    anchors = {}
    for role, a, stats in (("front", front, runner.front_stats), ("back", back, runner.back_stats)):
        anchors[role] = {"name": a.model.name, "weights": a.source, "accuracy": a.accuracy, "params": stats.params,
                         "flops": stats.flops, "blocks": len(stats.blocks)}
    sources = {v["latency"][-1]["source"] for v in variants if len(v["latency"]) > 1}
    latency_source = ("unavailable" if not sources else sources.pop() if len(sources) == 1 else
                      "predicted" if "predicted" in sources else "estimated")
    manifest = {
        "schema_version": mf.SCHEMA_VERSION,
        "created": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "restnet_version": __version__,
        "profile": {"name": prof.name, "description": prof.description, "backend": prof.backend,
                    "threads": prof.threads, "dtype": prof.dtype, "metric": req.metric, "unit": UNITS[req.metric],
                    "budgets": budgets, "band": req.band, "ram_budget_mb": prof.model_ram_mb,
                    "storage_mb": prof.storage_mb, "compute_gmacs": prof.compute_gflops,
                    "latency_target_ms": prof.latency_target_ms},
        "task": {"dataset": task.name, "num_classes": task.num_classes, "classes": list(task.classes),
                 "labels_file": "labels.txt", "val_size": len(task.val)},
        "anchors": anchors,
        "input": _input_info(spec, exp.resolution),
        "output": {"shape": [1, task.num_classes], "kind": "logits",
                   "note": "unnormalised class scores; apply softmax for probabilities"},
        "flops_convention": mf.FLOPS_CONVENTION,
        "peak_ram_method": mf.RAM_METHOD,
        "latency_source": latency_source,
        "variants": variants,
    }
    return manifest


def write_package_files(root: Path, runner: Runner, manifest: dict) -> None:
    from restnet.package import firmware, report

    (root / "labels.txt").write_text("\n".join(manifest["task"]["classes"]) + "\n")
    (root / "manifest.schema.json").write_text(mf.schema_text())
    (root / "README.md").write_text(firmware.readme(manifest))
    report.write(root, runner, manifest)
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")

"""restnet-pack: a device profile in, a verified per-device package out.

This module only runs the stages in order; each stage lives in the module named for it:
check the request (request) and the budgets against the architectures (budgets; cheap, so a bad
request fails before any heavy work), adapt the anchors, CKA, select (Algorithm 1) and train the
stitching layers (Algorithm 2) through the pipeline's caches (restnet.pipeline), evaluate
(variants), export + verify every file in its own runtime (exports, probes), then write the package
(assemble, latency, writer; atomically). The pipeline Runner stops here: the stages get what they
need, not the Runner.
"""
from __future__ import annotations

import dataclasses
import functools
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import torch
from rich.markup import escape

from restnet.anchors.stats import count_flops, count_params
from restnet.constraints import Setting
from restnet.cost import CostModel
from restnet.package.assemble import AnchorFacts, build_manifest
from restnet.package.budgets import BudgetPlan, describe_selections, plan_budgets
from restnet.package.limits import Figures, activation_peaks, check_storage, describe_ladder, latency_figures, \
    plan_ladder
from restnet.package.eta import StageClock
from restnet.package.exports import CheckData, export_variant
from restnet.package.latency import DeviceLatency, LatencyTable, host_pte_ms, predicted_cost_model, pte_ms_per_mac
from restnet.package.probes import export_probes
from restnet.package.request import PackRequest
from restnet.package import bundle, dominance, fairness, family, reference, signing
from restnet.package.variants import Built, variant_ids
from restnet.package.writer import exclusive, prepare_out, staged_dir, write_package_files
from restnet.pipeline import Runner
from restnet.pipeline.cka import cka_tensor
from restnet.selection import Selection
from restnet.training.control import trained_alike
from restnet.training.stitch import TrainConfig, trainable_params
from toolkit.formats import LATENCY_TABLE_NAME


def pack(runner: Runner, req: PackRequest, log: Callable[[str], None] = print) -> tuple[Path, dict]:
    """Run every stage, one pack per output folder at a time; returns (package path, manifest)."""
    req.check()
    with exclusive(req.out):
        prepare_out(req.out)
        req = dataclasses.replace(req, sequence=signing.next_sequence(req.out, req.sequence))
        return _pack(runner, req, log)


def _pack(runner: Runner, req: PackRequest, log: Callable[[str], None]) -> tuple[Path, dict]:
    table = LatencyTable(req.latency_table) if req.latency_table else None
    if table is not None:
        table.check_fits(req.profile.name, runner.exp.resolution)
        if note := table.trust_note():
            log(note)
    clock = StageClock(log)
    with clock("check budgets"):
        cm, pred, plan = _check_budgets(runner, req, table, log)
        budgets = plan.budgets
    with clock("adapt anchors"):
        _anchors = (runner.front, runner.back)  # reading them adapts (or loads from the cache) both anchors
    with clock("CKA"):
        runner.cka()
    with clock("select"):
        sels = runner.select(budgets, cm, plan.constraints)
        for line in describe_selections(sels, budgets, cka_tensor(runner.cka()), cm, plan.constraints,
                                        (runner.exp.front, runner.exp.back)):
            log(escape(line))  # '[close call: ...]' is text, not a rich style tag
    cfg = runner.train_config(**req.train_overrides)
    with clock("train stitches"):
        trained = [(s, runner.train(s.point, cfg).model.eval()) for s in sels]
    with clock("control"):
        controls = _controls(runner, cfg, cm, log)
    with clock("evaluate"):
        built = _evaluate(runner, req, cm, trained, cfg, plan.ships)
        if not req.keep_dominated:
            built = _drop_dominated(runner, built, cm, fairness.small(controls), log)
    ids = variant_ids(req.profile.name, req.metric, built)
    with staged_dir(req.out) as tmp:
        with clock("export + verify"):
            probes, bundles = _export(runner, req, built, ids, tmp, log)
        with clock("write package"):
            device = DeviceLatency(req, table, pred, _per_mac(runner, req, log))
            manifest = build_manifest(req, budgets, built, ids, device, _anchor_facts(runner, controls),
                                      runner.task, runner.exp.resolution, probes, plan.ladder, bundles, cm.source)
            manifest = signing.stamp(manifest, req.sequence, list(req.sign_keys))
            check_storage(req.profile, tmp)
            log(family.describe(manifest.get("family")))
            if table is not None:
                shutil.copyfile(table.path, tmp / LATENCY_TABLE_NAME)
            write_package_files(tmp, runner.cka(), manifest)
            if req.sign_keys:
                signing.write_signature(tmp, manifest, list(req.sign_keys))
                log(f"signed by key {', '.join(manifest['key_ids'])}; sequence {manifest['sequence']}")
    clock.save()
    log(f"package written in {time.perf_counter() - clock.t0:.0f} s")
    return req.out, manifest


def _check_budgets(runner: Runner, req: PackRequest, table: LatencyTable | None,
                   log: Callable[[str], None]) -> tuple[CostModel, CostModel | None, BudgetPlan]:
    """(cost model, device-predicted latency model if the table allows one, budget plan)."""
    names = (runner.exp.front, runner.exp.back)
    pred = None
    if table is not None and table.has_blocks:
        pred = predicted_cost_model(table, runner.cost_model("params"), names, runner.exp.resolution)
    cm = pred if req.metric == "latency" and pred is not None else \
        runner.cost_model(req.metric, latency_scale=req.latency_scale)  # eager proxy: restnet.part_timing.PROXY_THREADS
    if cm.note:
        log(f"[yellow]{cm.note}[/]")
    plan = plan_budgets(cm, req, names, _figures(runner, req, pred, cm, log) if req.ladder else None)
    log(f"budgets ({cm.unit}, {cm.source}): " + ", ".join(f"{b:.4g}" for b in plan.budgets)
        + "".join(f"; {c}" for c in plan.constraints if isinstance(c, Setting)))
    if plan.ladder is not None:
        log(describe_ladder(plan.ladder, names))
    return cm, pred, plan


def _figures(runner: Runner, req: PackRequest, pred: CostModel | None, cm: CostModel,
             log: Callable[[str], None]) -> Figures:
    """Every stitch point's device figures, from the architectures (what a ladder is planned on)."""
    res, p = runner.exp.resolution, req.profile
    static = Figures(pred, runner.cost_model("flops"), runner.cost_model("params"),
                     activation_peaks(runner.front_arch, res), activation_peaks(runner.back_arch, res))
    scale = 1.0 if p.is_host else (p.latency_estimate.host_scale if p.latency_estimate else None)
    if pred is None and scale is not None:
        # Timing the anchors' .pte takes a minute; a device that the static limits alone rule out
        # (an unknown figure breaks nothing, so the latency limit can only remove more) stops first.
        plan_ladder(p, req.ladder, cm, static, (runner.exp.front, runner.exp.back))
        arch = {"front": runner.front_arch, "back": runner.back_arch}
        static.latency = latency_figures(runner.cost_model("latency"),
                                         lambda role: host_pte_ms(arch[role], res, req.threads, log), scale)
    return static


def _per_mac(runner: Runner, req: PackRequest, log: Callable[[str], None]) -> Callable[[], float]:
    """The anchors' .pte ms per MAC on this host, timed only when a file was too busy to time (see latency.py)."""
    anchors = [(runner.front_arch, runner.front_stats.flops), (runner.back_arch, runner.back_stats.flops)]
    return functools.cache(lambda: pte_ms_per_mac(anchors, runner.exp.resolution, req.threads, log))


def _evaluate(runner: Runner, req: PackRequest, cm: CostModel, trained: list[tuple[Selection, torch.nn.Module]],
              cfg: TrainConfig, ships: dict[str, bool]) -> list[Built]:
    """Every variant with its accuracy and static costs, cheapest first (anchors after a tie)."""
    res = runner.exp.resolution
    x = torch.zeros(1, 3, res, res)
    front, back = runner.front, runner.back
    built = []
    for s, model in trained:
        built.append(Built("stitched", model, model.describe(), s.cost,
                           runner.report_accuracy(model, front.spec), count_params(model),
                           int(count_flops(model, x)[""]), trainable_params(model, cfg.strategy), front.spec,
                           selection=s))
    if req.include_anchors:
        for role, a, stats in (("front", front, runner.front_stats), ("back", back, runner.back_stats)):
            if not ships[role]:  # breaks a device limit
                continue
            built.append(Built("anchor", a.model, a.model.name, cm.anchor_cost(role),
                               runner.report_accuracy(a.model, a.spec), stats.params, stats.flops, 0, a.spec, role=role))
    built.sort(key=lambda b: (b.cost, b.kind))
    return built


def _controls(runner: Runner, cfg: TrainConfig, cm: CostModel,
              log: Callable[[str], None]) -> dict[str, fairness.AnchorControl]:
    """Both anchors trained alike to the members (restnet.training.control; cached), evaluated and logged."""
    specs = runner.cost_model("params")
    out = {}
    for role, anchor, block_specs in (("front", runner.front, specs.front_specs),
                                      ("back", runner.back, specs.back_specs)):
        c = trained_alike(role, anchor, block_specs, runner.stitch_task, cfg, runner.exp.kernel_size,
                          runner.exp.seed)
        out[role] = fairness.AnchorControl(role, anchor.model.name, c.after_block, cm.anchor_cost(role),
                                           runner.report_accuracy(anchor.model, anchor.spec),
                                           runner.report_accuracy(c.model, anchor.spec),
                                           runner.val_correct(c.model, anchor.spec))
        log(fairness.describe(out[role], runner.task.report_name))
    if warn := fairness.warning(out.values()):
        log(f"[yellow]{warn}[/]")
    return out


def _drop_dominated(runner: Runner, built: list[Built], cm: CostModel, control: fairness.AnchorControl,
                    log: Callable[[str], None]) -> list[Built]:
    """The family without the stitched members that a cheaper member, or the small anchor trained alike
    (restnet.package.fairness), beats on validation (restnet.package.dominance)."""
    correct = [runner.val_correct(b.model, b.spec) for b in built] + [control.val_correct]
    names = [b.name for b in built] + [control.label]
    costs = [b.cost for b in built] + [control.cost]
    drops = dominance.dominated(costs, correct, [b.kind == "stitched" for b in built] + [False])
    for d in drops:
        log(f"[yellow]dropped {names[d.index]} ({costs[d.index]:.4g} {cm.unit}): val top-1 {d.accuracy:.2%}, below "
            f"{names[d.by]}'s {d.by_accuracy:.2%} at {costs[d.by]:.4g} {cm.unit} (McNemar p = {d.p:.1g}); "
            "--keep-dominated ships it[/]")
    gone = {d.index for d in drops}
    return [b for i, b in enumerate(built) if i not in gone]


def _export(runner: Runner, req: PackRequest, built: list[Built], ids: list[str], root: Path,
            log: Callable[[str], None]) -> tuple[list[dict] | None, list[dict] | None]:
    """Every variant's files (the family's shared file with ``--bundle shared``, and the per-block probes
    when asked) under ``root``; returns (probes, bundles)."""
    res = runner.exp.resolution
    x = torch.zeros(1, 3, res, res)
    data = CheckData.of(runner.task, runner.exp.seed, req.int8_recipe)
    (root / "variants").mkdir()
    shared = bundle.shared_format(req)
    if req.bundle == "shared" and shared is None:
        log(f"[yellow]--bundle shared: {req.formats[0]} cannot share weights between variants in one file "
            "(see docs/pack.md), so each variant ships its own file[/]")
    for b, vid in zip(built, ids):
        export_variant(b, vid, req, data, x, root, log, shared)
    bundles = [bundle.export_shared(built, ids, req, data, x, root, log)] if shared else None
    # Eager logits on a fixed image set, per shipped file, into the cache (not the package):
    # what `scripts/aarch64-standin.sh check` compares another machine's outputs with.
    reference.store(runner.task, runner.exp.seed, [(b.model, b.spec, b.files) for b in built])
    if not req.probes:
        return None, bundles
    return export_probes(runner.front_arch, runner.back_arch, runner.cost_model("params"), res, req.formats[0],
                         root, req.threads, log, req.calibration), bundles


def _anchor_facts(runner: Runner, controls: dict[str, fairness.AnchorControl]) -> dict[str, AnchorFacts]:
    return {role: AnchorFacts(a.model.name, a.source, runner.report_accuracy(a.model, a.spec), stats.params,
                              stats.flops, len(stats.blocks), a.spec, controls[role].trained_alike,
                              controls[role].after_block, a.curve, a.stopped)
            for role, a, stats in (("front", runner.front, runner.front_stats),
                                   ("back", runner.back, runner.back_stats))}

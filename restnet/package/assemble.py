"""The manifest, assembled from what the stages produced through the pydantic models of manifest.py.

Every entry is a model instance, so a misspelt or mistyped field fails here, while the pack runs,
not in a firmware team's parser. Fields are written exactly when they were given: an anchor has no
``stitch``, an fp32 file no ``flagged`` (``exclude_unset``), and an explicit null stays null.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from restnet import __version__
from restnet.anchors.stats import count_params
from restnet.cost import UNITS
from restnet.data import InputSpec, Task
from restnet.package import family
from restnet.package import manifest as mf
from restnet.package.latency import DeviceLatency
from restnet.package.limits import Ladder, headroom
from restnet.package.request import PackRequest
from restnet.package.variants import Built


@dataclass(frozen=True)
class AnchorFacts:
    """What the manifest says about one task anchor."""

    name: str
    weights: str  # where the weights came from and how they were adapted
    accuracy: float
    params: int
    flops: int
    blocks: int
    spec: InputSpec
    trained_alike: float  # the anchor given the members' training (restnet.package.fairness), same split
    control_block: int  # where that control was cut and stitched to itself
    curve: list[dict] | None = None  # adapted until converged: validation top-1 per round
    stopped: str | None = None


def build_manifest(req: PackRequest, budgets: list[float], built: list[Built], ids: list[str],
                   device: DeviceLatency, anchors: dict[str, AnchorFacts], task: Task, resolution: int,
                   probes: list[dict] | None = None, ladder: Ladder | None = None,
                   bundles: list[dict] | None = None, cost_source: str | None = None) -> dict:
    """The manifest as JSON-ready data (validated on the way: every part is a model). ``cost_source``: the
    selection cost model's source (restnet.cost.CostModel.source)."""
    variants = [_variant(b, vid, device, req, anchors, resolution, ladder) for b, vid in zip(built, ids)]
    extra = {"probes": [mf.Probe(**p) for p in probes]} if probes else {}
    if bundles:
        extra["bundles"] = [mf.SharedFile(**b) for b in bundles]
    stats = family.family_stats([v.model_dump() for v in variants])
    if stats is not None:
        extra["family"] = mf.FamilyInfo(**stats)
    m = mf.Manifest(
        schema_version=mf.SCHEMA_VERSION, created=_now(), restnet_version=__version__,
        profile=_profile_info(req, budgets, ladder, "shared" if bundles else "files", cost_source),
        task=_task_info(task),
        anchors={role: mf.AnchorInfo(name=a.name, weights=a.weights, accuracy=a.accuracy, params=a.params,
                                     flops=a.flops, blocks=a.blocks,
                                     trained_alike=mf.TrainedAlike(accuracy=a.trained_alike,
                                                                   after_block=a.control_block),
                                     **_adaptation(a))
                 for role, a in anchors.items()},
        input=input_info(anchors["front"].spec, resolution),
        output=mf.OutputInfo(shape=[1, task.num_classes], kind="logits",
                             note=mf.OutputInfo.model_fields["note"].default),
        flops_convention=mf.FLOPS_CONVENTION, peak_ram_method=mf.RAM_METHOD,
        latency_source=_latency_source(variants), variants=variants, **extra)
    return m.model_dump(mode="json", exclude_unset=True)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _profile_info(req: PackRequest, budgets: list[float], ladder: Ladder | None, layout: str,
                  cost_source: str | None) -> mf.ProfileInfo:
    p = req.profile
    mode = "ladder" if ladder is not None else "values" if req.budgets else "between"
    extra = {"limits": ladder.limits, "binding_limit": ladder.binding} if ladder is not None else {}
    if cost_source is not None:
        extra["cost_source"] = cost_source
    return mf.ProfileInfo.of(p, unit=UNITS[req.metric], budgets=budgets, ram_budget_mb=p.model_ram_mb,
                             budget_mode=mode, bundle=layout, **extra)


def _task_info(task: Task) -> mf.TaskInfo:
    return mf.TaskInfo(dataset=task.name, num_classes=task.num_classes, classes=list(task.classes),
                       labels_file="labels.txt", val_size=len(task.val), accuracy_split=task.report_name,
                       test_size=len(task.test) if task.test is not None else None)


def input_info(spec: InputSpec, resolution: int) -> mf.InputInfo:
    """How a device must prepare an image for a model that was trained on ``spec``: the spec's own
    ``to_manifest()``, checked against the manifest's model and against ``resolution``, the size the
    package's files take."""
    if spec.resolution != resolution:
        raise ValueError(f"an input spec at {spec.resolution} px for files that take {resolution} px")
    return mf.InputInfo(**spec.to_manifest())


def _variant(b: Built, vid: str, device: DeviceLatency, req: PackRequest, anchors: dict[str, AnchorFacts],
             resolution: int, ladder: Ladder | None = None) -> mf.Variant:
    main, prof = b.files[0], req.profile
    peak = (main["size"] + 2 * b.activation_bytes) / 2**20 + mf.RUNTIME_OVERHEAD_MB
    lat = device(b)
    device_ms = lat[-1]["ms"] if len(lat) > 1 else None
    fits = mf.Fits(ram=peak <= prof.model_ram_mb,
                   compute=None if prof.compute_gmacs is None else b.flops / 1e9 <= prof.compute_gmacs,
                   latency=None if prof.latency_target_ms is None or device_ms is None
                   else device_ms <= prof.latency_target_ms)
    parts = _stitched_parts(b, anchors) if b.kind == "stitched" else _anchor_parts(b, anchors, resolution)
    if ladder is not None:
        figures = {"latency": device_ms, "compute": b.flops, "ram": peak,
                   "storage": sum(f["size"] for f in b.files) / 2**20}
        parts["limits"] = mf.VariantLimits(binding=ladder.binding if b.kind == "stitched" else None,
                                           headroom=headroom(figures, ladder.limits))
    return mf.Variant(id=vid, kind=b.kind, cost=b.cost, params=b.params, flops=b.flops,
                      trainable_params=b.trainable, accuracy=b.accuracy, latency=[mf.Latency(**x) for x in lat],
                      peak_ram_mb=round(peak, 2), fits=fits,
                      files=[mf.FileEntry(**{k: f[k] for k in mf.FileEntry.model_fields if k in f}) for f in b.files],
                      **parts)


def _stitched_parts(b: Built, anchors: dict[str, AnchorFacts]) -> dict:
    s, stitch = b.selection, b.model.stitch
    k = stitch.kernel_size
    return {"front": mf.PartInfo(anchor=anchors["front"].name, blocks=[0, s.point.i]),
            "back": mf.PartInfo(anchor=anchors["back"].name, blocks=[s.point.j + 1, anchors["back"].blocks - 1]),
            "stitch": mf.StitchInfo(type=f"{stitch.kind} {k}x{k}" if stitch.kind != "linear" else "linear",
                                    kernel_size=k, in_shape=list(stitch.src.shape), out_shape=list(stitch.dst.shape),
                                    params=count_params(stitch)),
            "cka": s.cka}


def _anchor_parts(b: Built, anchors: dict[str, AnchorFacts], resolution: int) -> dict:
    """An anchor is all of itself; its input is given only when it differs from the package's."""
    a = anchors[b.role]
    parts = {"front": mf.PartInfo(anchor=b.name, blocks=[0, a.blocks - 1])}
    if b.spec != anchors["front"].spec:
        parts["input"] = input_info(b.spec, resolution)
    return parts


def _adaptation(a: AnchorFacts) -> dict:
    if not a.curve:
        return {}
    return {"adaptation": mf.Adaptation(stopped=a.stopped, curve=[mf.CurvePoint(epochs=c["epochs"],
                                                                                val_accuracy=c["val_accuracy"])
                                                                  for c in a.curve])}


def _latency_source(variants: list[mf.Variant]) -> str:
    """One word for the whole package: the device figures' source, or the weakest when they mix."""
    sources = {v.latency[-1].source for v in variants if len(v.latency) > 1}
    return ("unavailable" if not sources else sources.pop() if len(sources) == 1 else
            "predicted" if "predicted" in sources else "estimated")

"""``--bundle shared``: the family's device format as one file, one method (signature) per variant.

Every variant is made of blocks of the same two anchors, so per-variant files ship the anchors' weights
once per member (about 70 MB for ~31 MB of distinct weights in the default rpi4 family). A .pte whose
methods are the members stores XNNPACK's delegate constants as named data keyed by content, and a
.tflite whose signatures are the members stores the constants they share once (litert-torch): the
shared blocks are written once, and the device loads one file and switches members by method. Each method is
verified against its eager model on the whole validation split like any exported file; the bundle is
cached under the exact weights of all its members.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import torch

from restnet import atomic, cache
from restnet.export import ClassifierInfo, export_verified_many, get_format
from restnet.package.app_info import family_info
from restnet.package.exports import CheckData, cached_record, export_key, host_latency, store_record
from restnet.package.request import PackRequest
from restnet.package.variants import Built
from restnet.paths import cache_dir


def shared_format(req: PackRequest) -> str | None:
    """The format the family is bundled in: the device format when ``bundle: shared`` and it can hold
    several models in one file with shared weights; else None (one file per variant)."""
    fmt = req.formats[0]
    return fmt if req.bundle == "shared" and get_format(fmt).export_many is not None else None


def method_name(vid: str) -> str:
    """A variant id as a method / signature name every runtime and C++ caller accepts."""
    return re.sub(r"[^0-9A-Za-z_]", "_", vid)


def export_shared(built: list[Built], ids: list[str], req: PackRequest, data: CheckData, example: torch.Tensor,
                  root: Path, log: Callable[[str], None]) -> dict:
    """Write ``variants/<profile>.family<suffix>`` under ``root``; put each variant's entry for it first in
    its ``files`` (with its ``method``) and return the manifest's ``bundles`` entry."""
    fmt = req.formats[0]
    f = get_format(fmt)
    names = [method_name(vid) for vid in ids]
    rel = f"variants/{req.profile.name}.family{f.suffix}"
    log(f"export the family as one {fmt} file ({len(names)} methods), verify each on "
        f"{len(data.task.val)} validation images")
    info = family_info(ids, [b.spec for b in built], data.task, req.profile.name) if f.annotate else None
    record = _verified_bundle(dict(zip(names, (b.model for b in built))), dict(zip(names, (b.spec for b in built))),
                              fmt, example, data, req.threads, root / rel, info)
    for b, name in zip(built, names):
        b.files.insert(0, {"dtype": "fp32", **record["methods"][name], "size": record["size"],
                           "sha256": record["sha256"], "path": rel, "method": name})
    log(f"{rel}: {record['size'] / 2**20:.1f} MB for {len(names)} variants")
    return {"format": fmt, "path": rel, "size": record["size"], "sha256": record["sha256"],
            "methods": dict(zip(names, ids))}


def _verified_bundle(models: dict, specs: dict, fmt: str, example: torch.Tensor, data: CheckData, threads: int,
                     dest: Path, info: ClassifierInfo | None = None) -> dict:
    """The bundle's record (size, sha256, per method: the export gates' figures and host latency), from the
    cache when the same members were bundled before."""
    f = get_format(fmt)
    weights = "+".join(f"{name}={cache.state_digest(m)}" for name, m in models.items())
    val_fp = data.task.val.fingerprint()
    slot = cache_dir("exports", export_key(weights, f"{fmt}-shared", tuple(example.shape), val_fp, threads, info))
    cached = slot / f"family{f.suffix}"
    if (record := cached_record(cached, dest)) is not None:
        return {**record, "methods": {name: {**m, **host_latency(lambda n=name: f.load(cached, threads, method=n),
                                                                  example, m)}
                                      for name, m in record["methods"].items()}}
    tmp = atomic.private_temp(slot / "family", f.suffix)
    checks = {name: data.val_batches(specs[name]) for name in models}
    out = export_verified_many(models, example, fmt, tmp, checks, threads=threads, info=info)
    methods = {}
    for name, e in out.items():
        methods[name] = {"format": fmt, "max_abs_diff": e.max_abs_diff, "top1_agreement": e.top1_agreement,
                         "checked": e.checked, "max_abs_logit": e.max_abs_logit, "scaled_diff": e.scaled_diff,
                         "runtime": f.runtime_version(), "input_layout": f.input_layout,
                         **host_latency(lambda n=name: f.load(tmp, threads, method=n), example), "threads": threads}
    first = next(iter(out.values()))
    record = {"format": fmt, "size": first.size, "sha256": first.sha256, "methods": methods}
    return store_record(tmp, cached, record, dest)

"""Verified exports, cached by the exact weights they were made from.

Exporting and checking a file against eager on the whole validation split
costs tens of seconds per variant and format; the result only depends on the
weights, the format, the input shape, the check data and the tool versions,
so it is stored under that key and a warm pack copies it instead.
"""
from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import torch
from torch import nn

from restnet import __version__, atomic, cache
from restnet.data import InputSpec, Split, Task, to_model_input
from restnet.export import (AGREEMENT_FLAG, AGREEMENT_FLOOR, ClassifierInfo, annotate, compare_with_eager,
                            export_verified, get_format, sha256_of, stages, tool_packages)
from restnet.export.base import percent
from restnet.export.int8 import get_route, quantize
from restnet.export.int8_recipe import Recipe
from restnet.package.app_info import classifier_info
from restnet.package.request import PackRequest
from restnet.package.variants import Built, largest_activation_bytes
from restnet.paths import cache_dir
from restnet.timing import clean_ms

SPARE_PER_VAL = 3  # an int8 file's flag: up to 3 unused training images per validation image (CheckData.spare)


def export_key(weights: str, fmt: str, shape: tuple[int, ...], check_fingerprint: str, threads: int,
               info: ClassifierInfo | None = None) -> str:
    """``info``: the classifier metadata written into the file, whose bytes then depend on it and on the
    writer's version; a file without metadata (None) has neither in its key."""
    tools = {p: version(p) for p in tool_packages()}
    meta = {} if info is None else {"meta": info.fingerprint(), "writer": f"mediapipe {version('mediapipe')}"}
    return cache.key_of(weights=weights, fmt=fmt, shape=list(shape), check=check_fingerprint,
                             threads=threads, tools=tools, v=__version__, **meta)


def intact_record(cached: Path) -> dict | None:
    """The record stored beside the file ``cached`` (``record.json``), if the file is there with its sha256."""
    record = cache.cached(cached.with_name("record.json"))
    if record is not None and cached.is_file() and sha256_of(cached) == record["sha256"]:
        return record
    return None


def cached_record(cached: Path, dest: Path) -> dict | None:
    """The stored record, with the file copied to ``dest``, if the cache slot is intact."""
    if (record := intact_record(cached)) is not None:
        shutil.copyfile(cached, dest)
    return record


def store_record(tmp: Path, cached: Path, record: dict, dest: Path) -> dict:
    """Move a freshly written file into its cache slot with its record, and copy it to ``dest``."""
    tmp.replace(cached)
    cache.atomic_write_json(record, cached.with_name("record.json"))
    shutil.copyfile(cached, dest)
    return record


def verified_file(model: nn.Module, fmt: str, example: torch.Tensor, checks: Iterable,
                  check_fingerprint: str, threads: int, dest: Path, weights: str | None = None,
                  agreement_floor: float = AGREEMENT_FLOOR, info: ClassifierInfo | None = None,
                  part: bool = False) -> dict:
    """Write ``dest`` (a verified export of ``model``) and return its record:
    size, sha256, max |Δ|, top-1 agreement with eager, host latency of the file.
    ``checks``: input batches, or (input, label) pairs (see compare_with_eager). ``info`` and ``part``: see
    restnet.export.export_verified (a part's key names it: its file is not the format's classifier file)."""
    f = stages(fmt, part)
    weights = weights or cache.state_digest(model)
    key = export_key(weights, f"{fmt}-part" if f is not get_format(fmt) else fmt, tuple(example.shape),
                     check_fingerprint, threads, info)
    slot = cache_dir("exports", key)
    cached = slot / f"model{f.suffix}"
    if (record := cached_record(cached, dest)) is not None:
        return {**record, **host_latency(lambda: f.load(cached, threads), example, record)}
    tmp = atomic.private_temp(slot / "model", f.suffix)
    out = export_verified(model, example, fmt, tmp, checks, threads=threads, agreement_floor=agreement_floor,
                          info=info, part=part)
    record = {"format": fmt, "size": out.size, "sha256": out.sha256, "max_abs_diff": out.max_abs_diff,
              "top1_agreement": out.top1_agreement, "checked": out.checked,
              "max_abs_logit": out.max_abs_logit, "scaled_diff": out.scaled_diff, "runtime": f.runtime_version(),
              "input_layout": f.input_layout, **host_latency(lambda: f.load(tmp, threads), example),
              "threads": threads}
    return store_record(tmp, cached, record, dest)


def host_latency(load: Callable[[], Callable], example: torch.Tensor, record: dict | None = None) -> dict:
    """A record's host-latency fields, timed now (toolkit.cleantime) unless ``record`` holds a clean figure:
    ``host_ms``, its ``host_spread`` (None: no burst was clean), ``host_clean`` of ``host_bursts`` bursts, and
    ``host_busy`` when the host was too busy to measure it. The cache never rewrites a record, so a busy
    figure (or a record without these fields: a plain median, starved or not) is timed again by every pack that uses it, and
    only the fresh fields go into the package."""
    if record is not None and "host_clean" in record and not record.get("host_busy"):
        return {}
    e = clean_ms(load(), example.numpy())
    return {"host_ms": e.ms, "host_spread": e.spread, "host_clean": e.clean,
            "host_bursts": e.bursts, "host_busy": e.busy}


def int8_file(model: nn.Module, fmt: str, example: torch.Tensor, data: "CheckData", spec: InputSpec,
              threads: int, dest: Path, log: Callable[[str], None] | None = None,
              info: ClassifierInfo | None = None) -> dict:
    """Write an int8 file of ``model`` in ``fmt`` (see restnet.export.int8) to ``dest``; its record has top-1
    agreement with fp32 and accuracy on the validation split, the agreement over every check image
    (check_agreement: the validation split and the unused training images, CheckData.check_images), and
    ``flagged`` when that is below AGREEMENT_FLAG. ``info``: the file's classifier metadata (see
    restnet.export.annotate), written before the file is checked."""
    route, f, recipe = get_route(fmt), get_format(fmt), data.recipe
    weights = cache.state_digest(model)
    # The recipe and every image set it used are part of the key: a file quantised another way is another file.
    key = export_key(weights, f"{fmt}-int8-{recipe}", tuple(example.shape), data.int8_fingerprint(), threads,
                     info if f.annotate else None)
    slot = cache_dir("exports", key)
    cached = slot / f"model{route.suffix}"
    if (record := cached_record(cached, dest)) is None:
        tmp = atomic.private_temp(slot / "model", route.suffix)
        tune = data.tune_images(spec) if recipe.finetune.images else None
        route.export(quantize(route, model, example, data.calibration_batches(spec), recipe, tune, log, spec),
                     example, tmp)
        annotate(fmt, tmp, info)
        run = f.load(tmp, threads)
        with torch.no_grad():
            c = compare_with_eager(model, run, data.val_batches(spec), example.shape[0])
        record = {"format": fmt, "dtype": "int8", "size": tmp.stat().st_size, "sha256": sha256_of(tmp),
                  "max_abs_diff": c.max_abs_diff, "max_abs_logit": c.max_abs_logit,
                  "scaled_diff": c.scaled_diff, "top1_agreement": c.agreement,
                  "accuracy": c.accuracy, "checked": c.n, "runtime": f.runtime_version(),
                  "input_layout": f.input_layout, **host_latency(lambda: run, example), "threads": threads}
        record = store_record(tmp, cached, record, dest)
    extra = {"recipe": recipe.describe()}
    if record.get("check_fingerprint") != data.check_fingerprint():
        # Checked on the unused training images apart from the file, so a cached file is not re-quantised
        # to be checked on more images.
        extra.update(_pooled_check(model, f.load(cached, threads), data, spec, example, record))
    if any(record.get(k) != v for k, v in extra.items()):
        record = {**record, **extra}
        cache.atomic_write_json(record, cached.with_name("record.json"))
    return {**record, **host_latency(lambda: f.load(cached, threads), example, record)}


def _pooled_check(model: nn.Module, run: Callable, data: "CheckData", spec: InputSpec, example: torch.Tensor,
                  record: dict) -> dict:
    """Agreement over the validation split (from ``record``) and the unused training images together: a
    5,000-image check has a standard error of ~0.2 points at 98 %, as wide as the int8 files' margin."""
    same, n = record["top1_agreement"] * record["checked"], record["checked"]
    if data.spare is not None:
        with torch.no_grad():
            u = compare_with_eager(model, run, data.spare_batches(spec), example.shape[0])
        same, n = same + u.agreement * u.n, n + u.n
    pooled = same / n
    return {"check_agreement": pooled, "check_images": n, "flagged": pooled < AGREEMENT_FLAG,
            "check_fingerprint": data.check_fingerprint()}


def export_variant(b: Built, vid: str, req: PackRequest, data: CheckData, example: torch.Tensor, root: Path,
                   log: Callable[[str], None], shared: str | None = None) -> None:
    """Every requested file of one variant under ``root/variants/``, verified; records go to ``b.files``.
    ``shared``: an fp32 format the family ships as one file instead (restnet.package.bundle)."""
    val_fp = data.task.val.fingerprint()
    info = classifier_info(vid, b.spec, data.task, req.profile.name)
    for fmt in (f for f in req.formats if f != shared):
        rel = f"variants/{vid}{get_format(fmt).suffix}"
        log(f"export {vid} -> {fmt}, verify on {len(data.task.val)} validation images")
        rec = verified_file(b.model, fmt, example, data.val_batches(b.spec), val_fp, req.threads, root / rel,
                            info=info if get_format(fmt).annotate else None)
        b.files.append({"dtype": "fp32", **rec, "path": rel})
    for fmt in req.int8_formats:
        route = get_route(fmt)
        rel = f"variants/{vid}{route.suffix}"
        log(f"quantise {vid} -> int8 {fmt} ({route.quantizer}; {data.recipe.describe()}), check agreement with fp32 "
            f"on {data.check_images()} images")
        rec = int8_file(b.model, fmt, example, data, b.spec, req.threads, root / rel, log, info)
        if rec["flagged"]:
            log(f"[yellow]int8 {vid} ({fmt}): top-1 agreement with fp32 {rec['check_agreement']:.2%} on "
                f"{rec['check_images']} images < {percent(AGREEMENT_FLAG)}: flagged[/]")
        b.files.append({**rec, "path": rel})
    b.activation_bytes = largest_activation_bytes(b.model, example)


@dataclass(frozen=True)
class CheckData:
    """The images every file is checked on: the whole validation split (and, for an int8 file's flag, the
    training images no stage used), and int8 calibration and fine-tuning images."""

    task: Task
    calibration: Split
    recipe: Recipe = Recipe()
    tune: Split | None = None  # training images the int8 weights are fine-tuned on (recipe.finetune)
    spare: Split | None = None  # unused training images an int8 file's flag is also decided on (Task.unused)

    @classmethod
    def of(cls, task: Task, seed: int, recipe: Recipe = Recipe()) -> "CheckData":
        n = len(task.train)
        tune = task.train.subset(min(recipe.finetune.images, n), seed + 29) if recipe.finetune.images else None
        # At most SPARE_PER_VAL spare images per validation image: the check's cost follows --val-size.
        spare = task.unused.subset(SPARE_PER_VAL * len(task.val), seed + 41) if task.unused is not None else None
        return cls(task, task.train.subset(min(recipe.calibration, n), seed + 17), recipe, tune, spare)

    def int8_fingerprint(self) -> str:
        sets = (self.calibration, self.tune, self.task.val)
        return "-".join(s.fingerprint() if s is not None else "none" for s in sets)

    def check_fingerprint(self) -> str:
        """The images an int8 file's flag is decided on besides the validation split."""
        return self.spare.fingerprint() if self.spare is not None else "none"

    def check_images(self) -> int:
        return len(self.task.val) + (len(self.spare) if self.spare is not None else 0)

    def spare_batches(self, spec: InputSpec) -> Iterator[torch.Tensor]:
        """Training images no stage used: inputs only, agreement needs no labels."""
        assert self.spare is not None
        return (to_model_input(imgs, spec) for imgs, _ in self.task.raw_loader(self.spare, 250))

    def tune_images(self, spec: InputSpec) -> torch.Tensor:
        assert self.tune is not None
        return torch.cat([to_model_input(imgs, spec) for imgs, _ in self.task.raw_loader(self.tune, 250)])

    def val_batches(self, spec: InputSpec) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(input, label) batches: every file's agreement with eager, and an int8 file's own accuracy."""
        return ((to_model_input(imgs, spec), y) for imgs, y in self.task.raw_loader(self.task.val, 250))

    def calibration_batches(self, spec: InputSpec) -> Iterator[torch.Tensor]:
        return (to_model_input(imgs, spec) for imgs, _ in self.task.raw_loader(self.calibration, 64))

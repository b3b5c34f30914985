"""The workstation's eager output for a package's files, for checking them on another machine.

At pack time (``store``) every variant's eager model runs once on a fixed set
of ``N_IMAGES`` images from the task's test split (val when the data has no
test split); the logits go to restnet's cache, one small record per shipped
file keyed by that file's sha256 (an int8 file's record holds its fp32 eager
model's logits; a variant inside a shared file is keyed by the file's sha256 and
its method). Nothing is added to the package. Later,
``python -m restnet.package.reference PACKAGE OUT.npz`` (``gather``) finds
the record of every member file of a package made on this workstation and
writes one ``.npz``: the uint8 images, the exact float inputs eager saw (per
input spec) and the eager logits per member. ``toolkit.crosscheck`` needs only
numpy and the device runtimes to compare a device's (or the aarch64
stand-in's) outputs with it.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from restnet import cache
from restnet.data import InputSpec, Task, to_model_input
from restnet.paths import cache_dir
from toolkit.formats import member_key

N_IMAGES = 256
FORMAT = "restnet-eager-reference"


def _root() -> Path:
    return cache_dir("eager-reference")


def _record(f: dict) -> Path:
    """Where a member file's record lives (a shared file's members: one record per method)."""
    return _root() / f"{member_key(f).replace(':', '.')}.json"


def _complete(f: dict) -> bool:
    """Whether the file's record and the images it names are both intact (damaged ones are discarded)."""
    rec = cache.cached(_record(f))
    return rec is not None and cache.intact(_root() / f"images-{rec['images']}.npz")


@torch.no_grad()
def store(task: Task, seed: int, members: list[tuple[torch.nn.Module, InputSpec, list[dict]]]) -> None:
    """For each (eager model, its input spec, its file records): write one record per file sha256
    that has none yet (a warm pack rewrites nothing). The images: a sample of the task's test split
    (val without one), seeded by the experiment's ``seed``."""
    todo = [(m, s, [f for f in files if not _complete(f)]) for m, s, files in members]
    todo = [t for t in todo if t[2]]
    if not todo:
        return
    test = getattr(task, "test", None)  # the data set's own test split where the task has one
    split, split_name = (test, "test") if test is not None else (task.val, "val")
    sample = split.subset(min(N_IMAGES, len(split)), seed + 29)
    images, labels = next(iter(task.raw_loader(sample, len(sample))))
    key = sample.fingerprint()
    img_path = _root() / f"images-{key}.npz"
    if not cache.intact(img_path):
        cache.seal(img_path, lambda f: np.savez(f, images=images.numpy(), labels=labels.numpy()))
    for model, spec, files in todo:
        logits = model.eval()(to_model_input(images, spec)).numpy().astype(np.float32)
        for f in files:
            rec = {"format": FORMAT, "version": 1, "images": key, "split": f"{task.name} {split_name}",
                   "spec": {"resolution": spec.resolution, "mean": list(spec.mean), "std": list(spec.std),
                            "interpolation": spec.interpolation, "output": "uint8"},
                   "sha256": f["sha256"], "logits": logits.tolist()}
            cache.atomic_write_json(rec, _record(f))


class ReferenceMissing(LookupError):
    """A member file has no eager record here; the message says which and what to do."""


def gather(package: str | Path, out: str | Path) -> dict:
    """One ``.npz`` with every device-runnable member file's eager reference; returns its meta."""
    from toolkit import runtime
    from toolkit.package import read_manifest

    root, m = read_manifest(package)
    members, specs, keys = [], [], set()
    arrays: dict[str, np.ndarray] = {}
    for v in m["variants"]:
        for f in v["files"]:
            if f["format"] not in runtime.BACKENDS:
                continue  # onnx / torchscript: no device runtime, nothing to check there
            path = _record(f)
            if (rec := cache.cached(path)) is None:  # missing, or damaged (then discarded)
                raise ReferenceMissing(
                    f"{root}: no eager reference for {f['path']} (sha256 {f['sha256'][:12]}…) in {_root()}. "
                    "The workstation that packed it keeps one per file: re-run the same restnet-pack command "
                    "here (it is cached, so it only adds the references) with the same RESTNET_CACHE.")
            if rec["spec"] not in specs:
                specs.append(rec["spec"])
            s = specs.index(rec["spec"])
            keys.add(rec["images"])
            arrays[f"logits_{len(members)}"] = np.asarray(rec["logits"], np.float32)
            members.append({"variant": v["id"], "path": f["path"], "sha256": f["sha256"], "method": f.get("method"),
                            "format": f["format"],
                            "dtype": f.get("dtype", "fp32"), "input_layout": f["input_layout"], "spec": s,
                            "x86_top1_agreement": f.get("top1_agreement"), "split": rec["split"]})
    if not members:
        raise ReferenceMissing(f"{root}: no member file has a device runtime ({', '.join(runtime.BACKENDS)})")
    if len(keys) != 1:
        raise ReferenceMissing(f"{root}: the members' references were made on different image sets {sorted(keys)}")
    img_path = _root() / f"images-{keys.pop()}.npz"
    if not cache.intact(img_path):
        raise ReferenceMissing(f"{img_path}: the reference images are missing or damaged; re-run the same "
                               "restnet-pack command here to write them again")
    with np.load(img_path, allow_pickle=False) as z:
        images, labels = z["images"], z["labels"]
    for s, spec in enumerate(specs):
        arrays[f"inputs_{s}"] = to_model_input(torch.from_numpy(images), InputSpec(
            spec["resolution"], tuple(spec["mean"]), tuple(spec["std"]), spec["interpolation"])).numpy()
    meta = {"format": FORMAT, "version": 1, "package_created": m["created"], "profile": m["profile"]["name"],
            "n": int(len(images)), "members": members, "specs": specs}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, meta=np.array(json.dumps(meta)), images=images, labels=labels, **arrays)
    return meta


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m restnet.package.reference PACKAGE OUT.npz", file=sys.stderr)
        return 2
    from toolkit.package import PackageError

    try:
        meta = gather(*argv)
    except (ReferenceMissing, PackageError) as err:
        print(f"eager reference: {err}", file=sys.stderr)
        return 1
    print(f"eager reference: {len(meta['members'])} member files x {meta['n']} images "
          f"({meta['members'][0]['split']}) -> {argv[1]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Every member of a package run from its shipped file by its device runtime on the whole test split.

A member is (file, method): in a package made with ``--bundle shared`` every variant is a method of one
file, loaded once. Each member's top-1 on the data set's test split (the split the manifest's ``accuracy``
was measured on, with eager torch, at pack time) is compared with the manifest's: the file must give the
same number of correct images. Preprocessing is restnet's own (the inputs eager saw); the .pte runs in
ExecuTorch, the .tflite in LiteRT.

  .venv/bin/python benchmarks/package_top1.py artifacts/rpi4-shared [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from _common import emit

from restnet.data import InputSpec, load_task, to_model_input
from restnet.export.pte import device_loader
from toolkit.switcher import Package


def member_top1(pkg: Package, v: dict, task) -> dict:
    s = InputSpec.from_manifest(v.get("input") or pkg.manifest["input"])
    infer, f, version = pkg.program(v["id"])
    correct, n, t = 0, 0, time.perf_counter()
    for imgs, labels in task.raw_loader(task.report, 250):
        x = to_model_input(imgs, s).numpy()
        if f["input_layout"] == "NHWC":
            x = x.transpose(0, 2, 3, 1)
        pred = np.concatenate([infer(np.ascontiguousarray(x[k:k + 1])) for k in range(len(x))]).argmax(-1)
        correct += int((pred == labels.numpy()).sum())
        n += len(x)
    eager = round(v["accuracy"] * n)
    return {"member": v["id"], "file": f["path"], "method": f.get("method") or "", "n": n,
            "file_correct": correct, "eager_correct": eager, "file_top1": correct / n, "eager_top1": v["accuracy"],
            "equal": correct == eager, "seconds": time.perf_counter() - t, "runtime": version}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("package", type=Path)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    torch.set_num_threads(1)
    pkg = Package(a.package, pte_fallback=device_loader)
    t = pkg.manifest["task"]
    if t.get("accuracy_split") != "test":
        raise SystemExit(f"{a.package}: accuracies are on the {t.get('accuracy_split', 'val')} split, not test")
    task = load_task(t["dataset"], val_size=t["val_size"], test_size=t["test_size"])
    rows = [member_top1(pkg, v, task) for v in pkg.variants]
    emit("package_top1", rows, {"package": str(a.package), "files_loaded": pkg.loads,
                                "all_equal": all(r["equal"] for r in rows)}, a.json)


if __name__ == "__main__":
    main()

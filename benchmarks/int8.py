"""int8 against fp32 for every member of a package, on both int8 routes, from the real files.

For each member (rebuilt from restnet's caches, checked against the manifest's test top-1) and each
route (``.int8.pte``: ExecuTorch XNNPACKQuantizer, run by the ExecuTorch runtime; ``.int8.tflite``:
litert-torch's quantizer, run by LiteRT): the int8 file is written with the recipe given (default: the
one ``--int8`` uses), calibrated (and fine-tuned) on the training images a pack uses (never validation
or test), and run on the test
split one image at a time. Printed: file sizes (fp32 and int8), test top-1 of fp32 (eager, which every
shipped fp32 file matches) and of the int8 file, top-1 agreement between them, and with ``--latency``
host latency of the fp32 and int8 files at the same threads, interleaved (fp32, int8, fp32, ...),
``--rounds`` medians of ``--runs`` each; the median of those and their spread (min-max) is reported.

  .venv/bin/python benchmarks/int8.py --package artifacts/rpi4 [--routes pte,tflite] [--images 10000]
      [--recipe default|base|clamp+c1024...] [--latency] [--json out.json]

With ``--shipped`` the package's own files are measured instead (sha256 checked against the manifest,
only the routes the package ships; no quantising): fp32 top-1 of eager and of the fp32 file, the
int8 file's agreement with both, and its recipe as the manifest records it (1.5).
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import emit, setup_threads
from _int8_members import Member, file_logits, load_members

from restnet.data import to_model_input
from restnet.export import get_format, int8_recipe, sha256_of
from restnet.export.int8 import get_route, quantize
from restnet.package.exports import CheckData
from restnet.timing import measure_callable_ms


def test_inputs(task, m: Member, n: int | None) -> tuple[torch.Tensor, np.ndarray]:
    split = task.report.subset(n, 7) if n and n < len(task.report) else task.report
    xs, ys = zip(*[(to_model_input(imgs, m.spec), y) for imgs, y in task.raw_loader(split, 250)])
    return torch.cat(xs), torch.cat(ys).numpy()


def file_predictions(run, x: torch.Tensor, layout: str) -> np.ndarray:
    return file_logits(run, x, layout).argmax(-1)


def interleaved_ms(fp32, int8, x: np.ndarray, rounds: int, runs: int) -> dict:
    f, q = [], []
    for _ in range(rounds):
        f.append(measure_callable_ms(fp32, x, runs=runs))
        q.append(measure_callable_ms(int8, x, runs=runs))
    return {"fp32_ms": statistics.median(f), "fp32_ms_range": f"{min(f):.3g}-{max(f):.3g}",
            "int8_ms": statistics.median(q), "int8_ms_range": f"{min(q):.3g}-{max(q):.3g}",
            "int8_over_fp32": statistics.median(q) / statistics.median(f)}


def measure(m: Member, fmt: str, data: CheckData, x: torch.Tensor, y: np.ndarray, a, tmp: Path) -> dict:
    route, f = get_route(fmt), get_format(fmt)
    example = torch.zeros(1, *x.shape[1:])
    with torch.no_grad():
        ref = torch.cat([m.model(x[k:k + 250]) for k in range(0, len(x), 250)]).argmax(-1).numpy()
    t = time.perf_counter()
    qpath, fpath = tmp / f"m{route.suffix}", tmp / f"m{f.suffix}"
    tune = data.tune_images(m.spec) if data.recipe.finetune.images else None
    q = quantize(route, m.model, example, data.calibration_batches(m.spec), data.recipe, tune,
                 log=lambda s: print(f"  {m.name} {fmt}: {s}", flush=True), spec=m.spec)
    route.export(q, example, qpath)
    seconds = time.perf_counter() - t
    f.export(m.model, example, fpath)
    run = f.load(qpath, a.threads)
    got = file_predictions(run, x, f.input_layout)
    row = {"member": m.name, "route": route.suffix, "n": len(x), "fp32_MB": fpath.stat().st_size / 2 ** 20,
           "int8_MB": qpath.stat().st_size / 2 ** 20, "fp32_top1": float((ref == y).mean()),
           "int8_top1": float((got == y).mean()), "delta_points": float((got == y).mean() - (ref == y).mean()) * 100,
           "agreement": float((got == ref).mean()), "quantise_s": seconds}
    if a.latency:
        x1 = example.numpy() if f.input_layout == "NCHW" else example.numpy().transpose(0, 2, 3, 1).copy()
        row.update(interleaved_ms(f.load(fpath, a.threads), run, x1, a.rounds, a.runs))
    return row


def measure_shipped(m: Member, fmt: str, files: dict, package: Path, x: torch.Tensor, y: np.ndarray, a) -> dict:
    """The package's own int8 file (and its fp32 file) for ``fmt``, checked against the manifest's
    sha256 and run on the test inputs: the very files a device gets, no re-quantisation."""
    f = get_format(fmt)
    paths, entries = {}, {}
    for dtype in ("fp32", "int8"):
        (entries[dtype],) = [e for e in files if e["format"] == fmt and e["dtype"] == dtype]
        path = package / entries[dtype]["path"]
        if sha256_of(path) != entries[dtype]["sha256"]:
            raise SystemExit(f"{path}: sha256 differs from the manifest's")
        paths[dtype] = path
    with torch.no_grad():
        ref = torch.cat([m.model(x[k:k + 250]) for k in range(0, len(x), 250)]).argmax(-1).numpy()
    fp32_run, run = f.load(paths["fp32"], a.threads), f.load(paths["int8"], a.threads)
    got, got32 = file_predictions(run, x, f.input_layout), file_predictions(fp32_run, x, f.input_layout)
    row = {"member": m.name, "route": get_route(fmt).suffix, "n": len(x),
           "fp32_MB": paths["fp32"].stat().st_size / 2 ** 20, "int8_MB": paths["int8"].stat().st_size / 2 ** 20,
           "fp32_top1": float((ref == y).mean()), "fp32_file_top1": float((got32 == y).mean()),
           "int8_top1": float((got == y).mean()), "delta_points": float((got == y).mean() - (ref == y).mean()) * 100,
           "agreement": float((got == ref).mean()), "agreement_files": float((got == got32).mean()),
           "quantise_s": None}
    if a.latency:
        x1 = x[:1].numpy() if f.input_layout == "NCHW" else x[:1].numpy().transpose(0, 2, 3, 1).copy()
        row.update(interleaved_ms(fp32_run, run, x1, a.rounds, a.runs))
    row["recipe"] = entries["int8"].get("recipe", "not recorded (manifest before 1.5)")
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--package", type=Path, default=Path("artifacts/rpi4"))
    ap.add_argument("--routes", default="pte,tflite")
    ap.add_argument("--images", type=int, default=None, help="a seeded subset of the test split (default: all)")
    ap.add_argument("--recipe", default="default", help="'default' (what --int8 uses) or int8_recipe.parse knobs")
    ap.add_argument("--members", default="", help="comma-separated member indices (default: all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--latency", action="store_true")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--json", default=None)
    ap.add_argument("--shipped", action="store_true",
                    help="measure the package's own int8 files (the routes it ships) instead of quantising again")
    a = ap.parse_args()
    env = setup_threads(a.threads)
    recipe = int8_recipe.DEFAULT if a.recipe == "default" else int8_recipe.parse(a.recipe)
    runner, members = load_members(a.package)
    if a.members:
        members = [members[int(i)] for i in a.members.split(",")]
    task, rows = runner.task, []
    data = CheckData.of(task, runner.exp.seed, recipe)  # the images a pack calibrates and fine-tunes on
    shipped = {v["id"]: v["files"] for v in json.loads((a.package / "manifest.json").read_text())["variants"]}
    for m in members:
        x, y = test_inputs(task, m, a.images)
        for fmt in a.routes.split(","):
            if a.shipped:
                if not any(e["format"] == fmt and e["dtype"] == "int8" for e in shipped[m.name]):
                    continue  # the package ships no int8 file in this format
                rows.append(measure_shipped(m, fmt, shipped[m.name], a.package, x, y, a))
            else:
                with tempfile.TemporaryDirectory() as d:
                    rows.append({**measure(m, fmt, data, x, y, a, Path(d)), "recipe": a.recipe})
            print(rows[-1], flush=True)
    used = "the package's own files (each row: the manifest's recipe)" if a.shipped else recipe.describe()
    emit("int8", rows, {"package": str(a.package), "recipe": used, "images": len(x), **env}, a.json)


if __name__ == "__main__":
    main()

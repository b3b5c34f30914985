"""The two TFLite converters side by side: litert-torch vs ONNX -> onnx2tf.

Per model: conversion wall time, file size, max |d| vs eager on 16 inputs, and
LiteRT interpreter latency (median, batch 1) at the given thread counts. The
default `tflite` format is the better of the two by these figures (docs/latency.md).

  python benchmarks/tflite_converters.py [--resolution 64] [--threads 1 2] [--json out.json]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import emit, setup_threads
from pte_latency import models

from restnet._compat import quiet_third_party
from restnet.export import get_format
from restnet.timing import measure_callable_ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    quiet_third_party()
    env = setup_threads(max(a.threads))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 3, a.resolution, a.resolution, generator=g)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in models(a.resolution).items():
            with torch.no_grad():
                want = model(x).numpy()
            for fmt in ("tflite", "tflite-onnx2tf"):
                f = get_format(fmt)
                path = Path(tmp) / f"{name.split()[0]}{f.suffix}"
                t = time.perf_counter()
                f.export(model, x[:1], path)
                convert_s = time.perf_counter() - t
                row = {"model": name, "converter": "litert-torch" if fmt == "tflite" else "onnx2tf",
                       "convert_s": convert_s, "size_MB": path.stat().st_size / 2**20,
                       "input": f.input_layout}
                run = f.load(path, max(a.threads))
                got = np.concatenate([run(x[k:k + 1].numpy()) for k in range(len(x))])
                row["max_abs_diff"] = float(np.abs(got - want).max())
                for th in a.threads:
                    run = f.load(path, th)
                    row[f"ms_{th}thr"] = measure_callable_ms(run, x[:1].numpy(), a.runs, warmup=5)
                rows.append(row)
    emit("TFLite converters: litert-torch vs onnx2tf", rows, {"env": env}, a.json)


if __name__ == "__main__":
    main()

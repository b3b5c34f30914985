"""Latency of exported .pte (ExecuTorch, XNNPACK) beside eager torch and onnxruntime, same threads.

Targets: .pte <= eager and <= 1.2 x onnxruntime. Models: both default anchors
and a stitched lite2 -> lite0 variant at the package resolution (weights do
not change latency, so random weights are used: no training needed). Every
runtime gets the same input, batch 1, the same thread count, warm-up, then
the median of N runs; each file is also checked against eager (max |d|).

``--calibrate`` also times EfficientNet-Lite0 at 224 px with 2 threads: the
host figure behind rpi4's latency_estimate.host_scale (device_profiles/rpi4.yaml).

  python benchmarks/pte_latency.py [--resolution 64] [--threads 1 2] [--runs 50] [--json out.json]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from _common import emit, setup_threads

from restnet._compat import quiet_third_party
from restnet.anchors import create_anchor
from restnet.anchors.stats import describe
from restnet.export import get_format
from restnet.stitching import StitchedModel, StitchLayer, StitchPoint, feature_spec
from restnet.timing import measure_callable_ms, measure_ms, torch_threads


def models(resolution: int) -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    a = create_anchor("tf_efficientnet_lite2", pretrained=False).eval()
    b = create_anchor("tf_efficientnet_lite0", pretrained=False).eval()
    sa, sb = describe(a, resolution), describe(b, resolution)
    p = StitchPoint(6, 4)
    s = StitchedModel(a, b, p, StitchLayer(feature_spec(a, sa.blocks[p.i].out_shape),
                                           feature_spec(b, sb.blocks[p.j].out_shape))).eval()
    return {"lite0": b, f"stitched {p.label('lite2', 'lite0')}": s, "lite2": a}


def time_all(name: str, model: torch.nn.Module, x: torch.Tensor, threads: int, runs: int, tmp: Path) -> dict:
    row = {"model": name, "res": x.shape[-1], "threads": threads}
    with torch_threads(threads):
        row["eager_ms"] = measure_ms(model, x, runs, warmup=5)
    with torch.no_grad():
        want = model(x).numpy()
    for fmt, col in (("pte", "pte_ms"), ("onnx", "ort_ms")):
        f = get_format(fmt)
        path = tmp / f"{name.split()[0]}-{x.shape[-1]}{f.suffix}"
        if not path.exists():
            f.export(model, x, path)
        run = f.load(path, threads)
        assert np.abs(run(x.numpy()) - want).max() <= 1e-4, f"{fmt} output differs from eager"
        row[col] = measure_callable_ms(run, x.numpy(), runs, warmup=5)
    row["pte/eager"] = row["pte_ms"] / row["eager_ms"]
    row["pte/ort"] = row["pte_ms"] / row["ort_ms"]
    row["ok"] = row["pte/eager"] <= 1.0 and row["pte/ort"] <= 1.2
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--calibrate", action="store_true", help="Also lite0 at 224 px, 2 threads (rpi4 host_scale).")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    quiet_third_party()
    env = setup_threads(max(a.threads))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        x = torch.randn(1, 3, a.resolution, a.resolution, generator=torch.Generator().manual_seed(0))
        ms = models(a.resolution)
        for threads in a.threads:
            for name, m in ms.items():
                rows.append(time_all(name, m, x, threads, a.runs, Path(tmp)))
        if a.calibrate:
            x224 = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
            rows.append(time_all("lite0", ms["lite0"], x224, 2, a.runs, Path(tmp)))
    summary = {"env": env, "all_ok": all(r["ok"] for r in rows),
               "worst_pte_over_eager": max(r["pte/eager"] for r in rows),
               "worst_pte_over_ort": max(r["pte/ort"] for r in rows)}
    emit(".pte vs eager torch vs onnxruntime (batch 1, median ms)", rows, summary, a.json)


if __name__ == "__main__":
    main()

"""One measurement of benchmarks/firmware_switch.py on the Python side, in a process of its own.

  python benchmarks/_switch_child.py PACKAGE ID|all[,ID|all...]

Torch-free (numpy and the toolkit only), so the device interpreter (.venv-device, with
executorch-numpy-runtime) can run it; where that runtime is missing it takes restnet's .pte loader,
as restnet-bench does. Opens the package (schema, paths, sha256: not timed), then loads and
first-runs each listed variant in order through toolkit.switcher.Package, and prints one JSON
object shaped as restnet-switch's: per step the load, the first run, RSS and peak RSS after it.
"""
from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def rss_mb() -> tuple[float, float]:
    """(VmRSS, VmHWM) in MiB, as restnet-switch reads them."""
    got = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            got[key] = int(rest.split()[0]) / 1024
    return got["VmRSS"], got["VmHWM"]


def pattern(n: int) -> np.ndarray:
    """restnet-switch's fixed input (the same LCG), so both sides run the same numbers."""
    state, out = 12345, np.empty(n, np.float32)
    for i in range(n):
        state = (state * 1664525 + 1013904223) & 0xFFFFFFFF
        out[i] = np.float32(state >> 8) / np.float32(1 << 24) * np.float32(4) - np.float32(2)
    return out


def main() -> None:
    root, which = sys.argv[1], sys.argv[2]
    rss0, _ = rss_mb()
    from toolkit.switcher import Package

    try:
        import executorch_numpy_runtime  # noqa: F401
        fallback = None
    except ImportError:
        import executorch.runtime  # noqa: F401  (imported here, with torch, so no load below pays for it)

        from restnet.export.pte import device_loader as fallback
    pkg = Package(root, pte_fallback=fallback)
    # "all": every variant, the most parameters first, as restnet::Package::preload loads them
    every = [v["id"] for v in sorted(pkg.variants, key=lambda v: -v.get("params", 0))]
    ids = [i for part in which.split(",") for i in (every if part == "all" else [pkg.variant(part)["id"]])]
    rss_open, hwm_open = rss_mb()
    steps = []
    for vid in ids:
        f = pkg.file_for(pkg.variant(vid))
        spec = pkg.input_spec(vid)
        h, w = spec["resize"]["size"]
        shape = (1, h, w, 3) if f["input_layout"] == "NHWC" else (1, 3, h, w)
        x = pattern(3 * h * w).reshape(shape)
        loads = pkg.loads
        t0 = time.perf_counter()
        infer, _, runtime = pkg.program(vid)
        t1 = time.perf_counter()
        y = infer(x)
        t2 = time.perf_counter()
        rss, hwm = rss_mb()
        steps.append({"variant": vid, "file": f["path"], "method": f.get("method") or "forward",
                      "new_file": pkg.loads > loads, "load_ms": (t1 - t0) * 1e3, "first_run_ms": (t2 - t1) * 1e3,
                      "switch_ms": (t2 - t0) * 1e3, "rss_mb": rss, "hwm_mb": hwm,
                      "logits": np.asarray(y, np.float32).ravel().tolist()})
    rss_end, hwm_end = rss_mb()
    print(json.dumps({"package": root, "runtime": runtime, "files_loaded": pkg.loads, "rss_start_mb": rss0,
                      "rss_verified_mb": rss_open, "hwm_verified_mb": hwm_open, "rss_end_mb": rss_end,
                      "hwm_end_mb": hwm_end, "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "steps": steps}))


if __name__ == "__main__":
    main()

"""The C++ runner against the Python toolkit: every .pte of a package on N CIFAR-10 test JPEGs.

For each variant (fp32, and int8 with ``--int8``), restnet-run (firmware/, built by
scripts/firmware.sh) and the toolkit classify the same JPEG files; per file the export gate
(max |Δ logit| <= 1e-4 x max(1, max |logit|)) and the top-1 are compared. Prints a table and JSON.

  python benchmarks/firmware_parity.py [--package artifacts/rpi4] [--images 256] [--int8] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import tempfile
import time
from pathlib import Path

from _common import emit

from restnet.firmware_parity import cifar_test_jpegs, compare, run_cpp, run_python

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--package", default=str(ROOT / "artifacts" / "rpi4"))
    ap.add_argument("--images", type=int, default=256, help="CIFAR-10 test JPEGs, as many of each class")
    ap.add_argument("--int8", action="store_true", help="also every int8 .pte")
    ap.add_argument("--binary", default=str(ROOT / "build" / "firmware" / "restnet-run"))
    ap.add_argument("--json", dest="out")
    args = ap.parse_args()
    binary, package = Path(args.binary), Path(args.package)
    if not binary.is_file():
        t = time.perf_counter()
        subprocess.run(["bash", str(ROOT / "scripts" / "firmware.sh")], check=True)
        print(f"built {binary} in {time.perf_counter() - t:.0f} s")
    manifest = json.loads((package / "manifest.json").read_text())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        images = cifar_test_jpegs(Path(tmp), args.images)
        for v in manifest["variants"]:
            for int8 in [False, True] if args.int8 else [False]:
                if not any(f["format"] == "pte" and f.get("dtype", "fp32") == ("int8" if int8 else "fp32")
                           for f in v["files"]):
                    continue
                s = compare(run_cpp(binary, package, images, v["id"], int8), run_python(package, images, v["id"], int8))
                rows.append({"variant": v["id"], "dtype": "int8" if int8 else "fp32", **s})
    ok = all(r["within_gate"] == r["top1_same"] == r["images"] for r in rows)
    emit("firmware_parity", rows, {"package": str(package), "images": len(images), "all_within_gate": ok,
                                   "machine": platform.machine(), "processor": platform.processor()}, args.out)
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()

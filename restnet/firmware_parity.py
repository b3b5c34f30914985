"""The C++ runner (firmware/, ``restnet-run``) against the Python toolkit on the same image files.

Both sides open the same package and the same JPEG/PNG files; the toolkit decodes with Pillow and
resizes with Pillow's uint8 resampling, restnet-run with libjpeg-turbo / stb_image and its port of
that resampling. Agreement is judged with the export gate (toolkit.formats.TOLERANCE): per image,
max |Δ logit| <= TOLERANCE x max(1, max |logit|), and the same top-1.
"""
from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import numpy as np

from toolkit.formats import TOLERANCE

ARCHIVE = Path(__file__).resolve().parents[1] / "data" / "cifar10-jpg.tar.xz"


def cifar_test_jpegs(out: Path, n: int) -> list[Path]:
    """``n`` test JPEGs, the first of each class in turn, copied byte for byte out of the bundled archive
    into ``out`` (the files themselves, so both sides decode the same bytes)."""
    per = -(-n // 10)
    out.mkdir(parents=True, exist_ok=True)
    got: dict[str, int] = {}
    paths = []
    with tarfile.open(ARCHIVE, "r:xz") as tar:
        for m in tar:
            parts = m.name.split("/")
            if len(parts) != 4 or parts[1] != "test" or not m.isfile():
                if len(parts) >= 2 and parts[1] == "train" and len(got) == 10 and min(got.values()) >= per:
                    break
                continue
            if got.get(parts[2], 0) >= per:
                continue
            got[parts[2]] = got.get(parts[2], 0) + 1
            p = out / f"{parts[2]}_{parts[3]}"
            p.write_bytes(tar.extractfile(m).read())
            paths.append(p)
            if len(got) == 10 and min(got.values()) >= per:
                break
    by_class: dict[str, list[Path]] = {}
    for p in paths:
        by_class.setdefault(p.name.split("_")[0], []).append(p)
    turns = [p for group in zip(*by_class.values()) for p in group]
    for p in set(paths) - set(turns[:n]):
        p.unlink()
    return turns[:n]


def run_cpp(binary: Path, package: Path, images: list[Path], variant: str, int8: bool = False) -> np.ndarray:
    """restnet-run's logits, one row per image."""
    cmd = [str(binary), str(package), *map(str, images), "--variant", variant, "--json", *(["--int8"] if int8 else [])]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if res.returncode != 0:
        raise RuntimeError(f"restnet-run exited {res.returncode}: {res.stderr.strip()}")
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert all(r["variant"] == variant for r in rows) and len(rows) == len(images)
    return np.asarray([r["logits"] for r in rows], dtype=np.float32)


def run_python(package: Path, images: list[Path], variant: str, int8: bool = False) -> np.ndarray:
    """The toolkit's logits (toolkit.preprocess + the ExecuTorch runtime), one row per image."""
    from restnet.export.pte import device_loader
    from toolkit.preprocess import preprocess
    from toolkit.switcher import Package

    pkg = Package(package, dtype="int8" if int8 else "fp32", pte_fallback=device_loader)
    _, f, _ = pkg.program(variant)
    spec = pkg.input_spec(variant)
    return np.concatenate([pkg.run(variant, preprocess(p, spec, f["input_layout"])) for p in images])


def compare(cpp: np.ndarray, py: np.ndarray) -> dict:
    """Per-image gate and top-1, summarised."""
    diff = np.abs(cpp - py).max(axis=1)
    limit = TOLERANCE * np.maximum(1.0, np.abs(py).max(axis=1))
    return {"images": int(len(py)), "max_abs_diff": float(diff.max()), "max_scaled_diff": float((diff / limit).max() * TOLERANCE),
            "within_gate": int((diff <= limit).sum()), "top1_same": int((cpp.argmax(1) == py.argmax(1)).sum())}



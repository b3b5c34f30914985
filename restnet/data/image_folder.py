"""Users' own data: ``ROOT/<class>/<image>`` folders.

If ``ROOT/train`` and ``ROOT/val`` both exist they are the split; otherwise
one folder is split per class with a seeded permutation, so the same seed
always gives the same validation images.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def scan(root: Path) -> tuple[list[str], list[Path], np.ndarray]:
    """Classes (sorted folder names), image paths and labels under ``root``."""
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(classes) < 2:
        raise ValueError(f"{root}: need at least 2 class sub-folders, found {len(classes)} ({classes})")
    paths, labels = [], []
    for i, c in enumerate(classes):
        files = sorted(p for p in (root / c).rglob("*") if p.suffix.lower() in IMAGE_EXTS)
        if not files:
            raise ValueError(f"{root / c}: no images (extensions {sorted(IMAGE_EXTS)})")
        paths += files
        labels += [i] * len(files)
    return classes, paths, np.asarray(labels, dtype=np.int64)


def split_folder(root: Path, val_fraction: float = 0.2, seed: int = 0):
    """(classes, (train_paths, train_labels), (val_paths, val_labels))."""
    if (root / "train").is_dir() and (root / "val").is_dir():
        classes, tp, tl = scan(root / "train")
        vclasses, vp, vl = scan(root / "val")
        if vclasses != classes:
            raise ValueError(f"{root}: train/ and val/ have different classes ({classes} vs {vclasses})")
        return classes, (tp, tl), (vp, vl)
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    classes, paths, labels = scan(root)
    rng = np.random.default_rng(seed)
    train_idx, val_idx = [], []
    for c in range(len(classes)):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val = max(1, int(round(len(idx) * val_fraction)))
        val_idx += idx[:n_val].tolist()
        train_idx += idx[n_val:].tolist()
    pick = lambda ii: ([paths[i] for i in sorted(ii)], labels[sorted(ii)])  # noqa: E731
    return classes, pick(train_idx), pick(val_idx)

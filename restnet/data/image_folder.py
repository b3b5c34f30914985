"""Users' own data: ``ROOT/<class>/<image>`` folders.

If ``ROOT/train`` and ``ROOT/val`` both exist they are the split; otherwise
one folder is split per class with a seeded permutation, so the same seed
always gives the same validation images.

A messy folder loads what is valid and reports what it skipped: every file
with an image extension is decoded once here, before any heavy work, and
one that does not decode (corrupt, truncated, not an image) is left out and
listed (``Skipped``). Grayscale, RGBA, palette and 16-bit PNGs are valid and
converted (toolkit.preprocess.to_rgb). The folder is refused outright
(DataUnavailable) when it has fewer than two classes or a class is left
with no valid image: nothing could be trained from it.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from restnet.data.errors import DataUnavailable
from toolkit.preprocess import PreprocessError, open_rgb

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
Skipped = list[tuple[Path, str]]  # (file, why it was left out)


def _why_unreadable(path: Path) -> str | None:
    try:
        open_rgb(path)
    except PreprocessError as err:
        return str(err).removeprefix(f"{path}: ")
    return None


def scan(root: Path, skipped: Skipped | None = None) -> tuple[list[str], list[Path], np.ndarray]:
    """Classes (sorted folder names), readable image paths and labels under ``root``; unreadable
    files are appended to ``skipped``."""
    if not root.is_dir():
        raise DataUnavailable(f"image folder {root} does not exist; pass a folder laid out as ROOT/<class>/<image>")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(classes) < 2:
        raise DataUnavailable(f"{root}: need at least 2 class sub-folders (ROOT/<class>/<image>), found "
                              f"{len(classes)} {classes}; add a folder per class")
    found = {c: sorted(p for p in (root / c).rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())
             for c in classes}
    with ThreadPoolExecutor() as pool:  # Pillow releases the GIL while decoding
        why = dict(zip([p for c in classes for p in found[c]],
                       pool.map(_why_unreadable, [p for c in classes for p in found[c]])))
    paths, labels = [], []
    for i, c in enumerate(classes):
        good = [p for p in found[c] if why[p] is None]
        if skipped is not None:
            skipped += [(p, why[p]) for p in found[c] if why[p] is not None]
        if not good:
            bad = len(found[c]) - len(good)
            raise DataUnavailable(f"{root / c}: no readable images (extensions {', '.join(sorted(IMAGE_EXTS))}"
                                  + (f"; {bad} unreadable" if bad else "") + "); add images or remove the folder")
        paths += good
        labels += [i] * len(good)
    return classes, paths, np.asarray(labels, dtype=np.int64)


def split_folder(root: Path, val_fraction: float = 0.2, seed: int = 0, skipped: Skipped | None = None):
    """(classes, (train_paths, train_labels), (val_paths, val_labels))."""
    if (root / "train").is_dir() and (root / "val").is_dir():
        classes, tp, tl = scan(root / "train", skipped)
        vclasses, vp, vl = scan(root / "val", skipped)
        if vclasses != classes:
            raise DataUnavailable(f"{root}: train/ and val/ have different classes ({classes} vs {vclasses}); "
                                  "give both the same class folders")
        return classes, (tp, tl), (vp, vl)
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    classes, paths, labels = scan(root, skipped)
    rng = np.random.default_rng(seed)
    train_idx, val_idx = [], []
    for c in range(len(classes)):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val = max(1, int(round(len(idx) * val_fraction)))
        val_idx += idx[:n_val].tolist()
        train_idx += idx[n_val:].tolist()
    pick = lambda ii: ([paths[i] for i in sorted(ii)], labels[sorted(ii)])  # noqa: E731
    return classes, pick(train_idx), pick(val_idx)


def describe_skipped(skipped: Skipped, shown: int = 5) -> str:
    """One report line: how many files were left out, the first few with why, and what to do."""
    head = "; ".join(f"{p} ({why})" for p, why in skipped[:shown])
    more = f"; and {len(skipped) - shown} more" if len(skipped) > shown else ""
    return (f"data: skipped {len(skipped)} unreadable image file(s): {head}{more}. Fix or remove them to use them "
            "(the rest of the folder is used)")

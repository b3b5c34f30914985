"""Task data: a name or a folder in, seeded train/val subsets and batches out.

``load_task("fashion-mnist")`` or ``load_task("/path/to/imagefolder")`` gives
a Task whose splits hold uint8 images; ``task.loader(split, spec, ...)``
batches them into model inputs. ``--train-size`` / ``--val-size`` pick seeded
subsets so the same arguments always mean the same images.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from restnet.data import fashion_mnist, image_folder
from restnet.data.fashion_mnist import DataUnavailable
from restnet.data.transforms import PREPROCESS_VERSION, InputSpec, load_image, to_model_input

__all__ = ["DataUnavailable", "InputSpec", "Split", "Task", "load_task", "to_model_input"]

BUILTIN = ("fashion-mnist",)


class Split(Dataset):
    """Images (uint8 array, or image paths read lazily) with integer labels."""

    def __init__(self, images, labels: np.ndarray, resolution: int | None = None, interpolation: str = "bilinear"):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels = images, np.asarray(labels, dtype=np.int64)
        self._res, self._interp = resolution, interpolation

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = self.images[i]
        if isinstance(img, (str, Path)):
            img = load_image(img, self._res or 224, self._interp)
        return torch.from_numpy(np.asarray(img)), int(self.labels[i])

    def subset(self, n: int | None, seed: int = 0) -> "Split":
        """A seeded random subset of ``n`` samples (all when n is None or too big)."""
        if n is None or n >= len(self):
            return self
        if n < 1:
            raise ValueError(f"subset size must be >= 1, got {n}")
        idx = np.sort(np.random.default_rng(seed).permutation(len(self))[:n])
        imgs = [self.images[i] for i in idx] if isinstance(self.images, list) else self.images[idx]
        return Split(imgs, self.labels[idx], self._res, self._interp)

    def fingerprint(self) -> str:
        """A hash of exactly which samples these are (keys caches)."""
        h = hashlib.sha256(PREPROCESS_VERSION.encode() + self.labels.tobytes())
        if isinstance(self.images, list):
            h.update("\n".join(map(str, self.images)).encode())
        else:
            h.update(np.ascontiguousarray(self.images).tobytes())
        return h.hexdigest()[:16]


@dataclass
class Task:
    name: str
    classes: list[str]
    train: Split
    val: Split

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def raw_loader(self, split: Split, batch_size: int = 64, shuffle: bool = False, seed: int = 0,
                   drop_last: bool = False) -> DataLoader:
        """Batches of (uint8 images, labels): for feeding one batch to two models each in its own way."""

        def collate(items):
            return torch.stack([im for im, _ in items]), torch.tensor([y for _, y in items])

        gen = torch.Generator().manual_seed(seed)
        return DataLoader(split, batch_size=batch_size, shuffle=shuffle, generator=gen, collate_fn=collate,
                          drop_last=drop_last)

    def loader(self, split: Split, spec: InputSpec, batch_size: int = 64, shuffle: bool = False,
               seed: int = 0) -> "_Preprocessed":
        """Batches of (float input [N,3,r,r], labels), preprocessed per batch."""
        return _Preprocessed(self.raw_loader(split, batch_size, shuffle, seed), spec)

    def fingerprint(self) -> str:
        return f"{self.name}-{self.train.fingerprint()}-{self.val.fingerprint()}"


class _Preprocessed:
    """A raw loader whose uint8 batches become model inputs on the way out."""

    def __init__(self, raw: DataLoader, spec: InputSpec):
        self.raw, self.spec = raw, spec

    def __len__(self) -> int:
        return len(self.raw)

    def __iter__(self):
        for imgs, labels in self.raw:
            yield to_model_input(imgs, self.spec), labels


def load_task(name: str, train_size: int | None = None, val_size: int | None = None, seed: int = 0,
              resolution: int = 224, val_fraction: float = 0.2) -> Task:
    """A built-in data set by name, or an ImageFolder path; subsets are seeded."""
    if name.lower() in BUILTIN:
        root = fashion_mnist.find_fashion_mnist()
        tr = Split(*fashion_mnist.load_split("train", root))
        te = Split(*fashion_mnist.load_split("test", root))
        task = Task("fashion-mnist", list(fashion_mnist.CLASSES), tr, te)
    else:
        path = Path(name)
        if not path.exists():
            raise DataUnavailable(f"data {name!r} is neither a built-in data set ({', '.join(BUILTIN)}) "
                                  "nor an existing ImageFolder directory")
        classes, (tp, tl), (vp, vl) = image_folder.split_folder(path, val_fraction, seed)
        task = Task(path.name, classes, Split(tp, tl, resolution), Split(vp, vl, resolution))
    task.train = task.train.subset(train_size, seed)
    task.val = task.val.subset(val_size, seed + 1)
    return task

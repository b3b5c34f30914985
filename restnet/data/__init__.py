"""Task data: a name or a folder in, seeded train/val/test splits and batches out.

``load_task("cifar10")``, ``load_task("fashion-mnist")`` or
``load_task("/path/to/imagefolder")`` gives a Task whose splits hold uint8
images; ``task.loader(split, spec, ...)`` batches them into model inputs.

The discipline of splits: ``val`` is carved (stratified, seeded) from the
training images and is what every decision looks at (rerank, settings,
export checks); ``test`` is the data set's official test split and is only
reported. ``--train-size`` / ``--val-size`` / ``--test-size`` pick seeded
subsets, so the same arguments always mean the same images.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from restnet import distributed
from restnet.data import cifar10, fashion_mnist, image_folder
from restnet.data.errors import DataUnavailable
from restnet.data.transforms import PREPROCESS_VERSION, InputSpec, load_image, to_model_input

__all__ = ["DataUnavailable", "InputSpec", "Split", "Task", "carve", "load_task", "to_model_input"]

BUILTIN = ("cifar10", "fashion-mnist")


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
        return self.subset_and_rest(n, seed)[0]

    def subset_and_rest(self, n: int | None, seed: int = 0) -> tuple["Split", "Split | None"]:
        """``subset(n, seed)`` and the samples it leaves out (None when it takes all)."""
        if n is None or n >= len(self):
            return self, None
        if n < 1:
            raise ValueError(f"subset size must be >= 1, got {n}")
        order = np.random.default_rng(seed).permutation(len(self))
        return self._take(np.sort(order[:n])), self._take(np.sort(order[n:]))

    def _take(self, idx: np.ndarray) -> "Split":
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
    test: Split | None = None  # None: the data has no test split of its own (an ImageFolder without test/)
    skipped: list = field(default_factory=list)  # (file, why): unreadable images left out of an ImageFolder
    # Training images left out by ``train_size``: no stage trains, calibrates or decides on them, so they can
    # check a file's agreement with its fp32 model (no labels needed) beside the validation split.
    unused: Split | None = None

    @property
    def report(self) -> Split:
        """The split accuracies are reported on: test where there is one."""
        return self.test if self.test is not None else self.val

    @property
    def report_name(self) -> str:
        return "test" if self.test is not None else "val"

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def raw_loader(self, split: Split, batch_size: int = 64, shuffle: bool = False, seed: int = 0,
                   drop_last: bool = False, shard: bool = False) -> DataLoader:
        """Batches of (uint8 images, labels): for feeding one batch to two models each in its own way.

        ``shard``: under torchrun, this rank's share of each batch one process would get (the same
        shuffle, so the same global batches; see restnet.distributed); one process: no change."""

        def collate(items):
            return torch.stack([im for im, _ in items]), torch.tensor([y for _, y in items])

        gen = torch.Generator().manual_seed(seed)
        if shard and distributed.requested():
            sampler = RandomSampler(split, generator=gen) if shuffle else SequentialSampler(split)
            batches = distributed.ShareOfEachBatch(BatchSampler(sampler, batch_size, drop_last))
            return DataLoader(split, batch_sampler=batches, generator=gen, collate_fn=collate)
        return DataLoader(split, batch_size=batch_size, shuffle=shuffle, generator=gen, collate_fn=collate,
                          drop_last=drop_last)

    def loader(self, split: Split, spec: InputSpec, batch_size: int = 64, shuffle: bool = False,
               seed: int = 0, shard: bool = False) -> "_Preprocessed":
        """Batches of (float input [N,3,r,r], labels), preprocessed per batch."""
        return _Preprocessed(self.raw_loader(split, batch_size, shuffle, seed, shard=shard), spec)

    def fingerprint(self) -> str:
        """Train and val only: what anything trained or decided depends on (reporting is keyed apart)."""
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


def carve(labels: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(rest, carved): ``n`` indices taken per class in proportion, seeded; both sorted."""
    if not 0 < n < len(labels):
        raise ValueError(f"cannot carve {n} validation images out of {len(labels)}")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.floor(counts / len(labels) * n).astype(int)
    quota[np.argsort(-(counts / len(labels) * n - quota))[: n - quota.sum()]] += 1  # largest remainders
    carved = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:q] for c, q in zip(classes, quota)])
    rest = np.setdiff1d(np.arange(len(labels)), carved)
    return rest, np.sort(carved)


def _builtin(name: str, val_size: int | None, seed: int) -> Task:
    if name == "cifar10":
        splits, classes = cifar10.load(), cifar10.CLASSES
    else:
        root = fashion_mnist.find_fashion_mnist()
        splits, classes = {s: fashion_mnist.load_split(s, root) for s in ("train", "test")}, fashion_mnist.CLASSES
    (x, y), test = splits["train"], Split(*splits["test"])
    rest, val = carve(y, val_size or min(DEFAULT_VAL, max(1, len(y) // 10)), seed + 101)
    return Task(name, list(classes), Split(x[rest], y[rest]), Split(x[val], y[val]), test)


DEFAULT_VAL = 5000  # built-ins: validation images carved from the training split without --val-size (<= 10 %)


def load_task(name: str, train_size: int | None = None, val_size: int | None = None, seed: int = 0,
              resolution: int = 224, val_fraction: float = 0.2, test_size: int | None = None) -> Task:
    """A built-in data set by name, or an ImageFolder path; subsets are seeded.

    Built-ins: ``val_size`` images (stratified) are set aside from the
    official training split first, so training never sees them; ``test`` is
    the official test split. ImageFolder: ``ROOT/train`` + ``ROOT/val`` (+
    ``ROOT/test`` when present) or one folder split per class.
    """
    if name.lower() in BUILTIN:
        task = _builtin(name.lower(), val_size, seed)
        val_size = None  # already carved to size
    else:
        path = Path(name)
        if not path.exists():
            raise DataUnavailable(f"data {name!r} is neither a built-in data set ({', '.join(BUILTIN)}) "
                                  "nor an existing ImageFolder directory")
        skipped: image_folder.Skipped = []
        classes, (tp, tl), (vp, vl) = image_folder.split_folder(path, val_fraction, seed, skipped)
        test = None
        if (path / "train").is_dir() and (path / "test").is_dir():
            tclasses, sp, sl = image_folder.scan(path / "test", skipped)
            if tclasses != classes:
                raise DataUnavailable(f"{path}: test/ has other classes than train/ ({tclasses} vs {classes})")
            test = Split(sp, sl, resolution)
        task = Task(path.name, classes, Split(tp, tl, resolution), Split(vp, vl, resolution), test, skipped)
    task.train, task.unused = task.train.subset_and_rest(train_size, seed)
    task.val = task.val.subset(val_size, seed + 1)
    if task.test is not None:
        task.test = task.test.subset(test_size, seed + 2)
    return task

"""Running the method's heavy stages under ``torchrun`` (torch.distributed), and unchanged without it.

Why it looks like this: the same command must give the same result on one process and on N, up to
floating-point noise, so that a user who outgrows one CPU can move to several GPUs or machines without
re-validating anything. Hence:

* the process group starts only when ``WORLD_SIZE > 1`` is in the environment (set by torchrun), lazily,
  on first use; a plain ``restnet train`` never touches torch.distributed;
* training keeps the global batch: every rank takes every ``world``-th example of each global batch that
  one process would draw (:func:`share`, :class:`ShareOfEachBatch`), and its loss is scaled so that DDP's
  gradient average is the global batch's mean. torch's DistributedSampler is not used on purpose: it
  draws a permutation of its own and pads the last batch with repeated examples, so its per-step losses
  could not match one process's;
* statistics (CKA's HSIC / per-batch CKA sums, counts) are summed over ranks with :func:`all_reduce`;
* rank 0 alone writes caches and checkpoints; the others wait on a :func:`barrier` and, where they need
  what was written, read it. Every rank must therefore see the same cache folder (checked at start-up).

Backend: ``nccl`` when CUDA is available (one GPU per process, ``LOCAL_RANK``), else ``gloo`` on CPU.
"""
from __future__ import annotations

import atexit
import contextlib
import os
import socket
import uuid
from collections.abc import Iterable, Iterator
from typing import TypeVar

import torch
from torch import nn
from torch.utils.data import Sampler

T = TypeVar("T")


def requested() -> bool:
    """True when launched by torchrun (or alike) with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def env_rank() -> int:
    """This process's rank from the environment, without starting anything (0 on one process)."""
    return int(os.environ.get("RANK", "0"))


def _start() -> bool:
    """Start the process group once, if asked for; True when running distributed."""
    if not requested():
        return False
    import torch.distributed as dist

    if not dist.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if cuda else "gloo")
        atexit.register(_stop)
        _check_shared_cache()
    return True


def _stop() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def world_size() -> int:
    if not _start():
        return 1
    import torch.distributed as dist

    return dist.get_world_size()


def rank() -> int:
    if not _start():
        return 0
    import torch.distributed as dist

    return dist.get_rank()


def is_main() -> bool:
    """Rank 0 (or the only process): the one that writes caches, checkpoints and reports."""
    return rank() == 0


def device() -> torch.device:
    """Where this rank computes: its GPU under nccl, else the CPU (one process always stays on the CPU)."""
    if _start() and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    if _start():
        import torch.distributed as dist

        dist.barrier()


def all_reduce(t: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """``t`` summed (or maxed) over ranks, on ``t``'s device; ``t`` itself on one process."""
    if not _start():
        return t
    import torch.distributed as dist

    ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}
    work = t.detach().to(device()).clone()
    dist.all_reduce(work, ops[op])
    return work.to(t.device)


def shard(items: Iterable[T]) -> Iterator[T]:
    """Round-robin: item k goes to rank k % world (all of them on one process)."""
    r, w = rank(), world_size()
    for k, item in enumerate(items):
        if k % w == r:
            yield item


def share(batch: torch.Tensor) -> torch.Tensor:
    """This rank's share of one global batch: every world-th element from its rank on."""
    return batch[rank()::world_size()]


def global_batch_size(step: int, batch_size: int, n: int) -> int:
    """Examples in global batch ``step`` (0-based) of an epoch of ``n`` examples: the last may be short."""
    return min(batch_size, n - step * batch_size)


class ShareOfEachBatch(Sampler[list[int]]):
    """A batch sampler: this rank's share of each batch ``batches`` yields (one process: the batch).

    Wrapping the very BatchSampler a single-process DataLoader builds keeps its shuffle and its
    random-number use, so the global batches are those of one process, step for step."""

    def __init__(self, batches: Sampler[list[int]]):
        self.batches = batches

    def __iter__(self) -> Iterator[list[int]]:
        r, w = rank(), world_size()
        for batch in self.batches:
            yield list(batch)[r::w]

    def __len__(self) -> int:
        return len(self.batches)


def wrap(module: nn.Module) -> nn.Module:
    """``module`` in DistributedDataParallel when distributed (gradients averaged over ranks), else itself."""
    if not _start():
        return module
    from torch.nn.parallel import DistributedDataParallel

    dev = device()
    return DistributedDataParallel(module, device_ids=[dev.index] if dev.type == "cuda" else None)


def sync_batchnorm(module: nn.Module) -> nn.Module:
    """BatchNorm over the global batch when distributed on GPUs (SyncBatchNorm needs CUDA); on CPU
    ranks each BatchNorm in training mode sees its own share of the batch (see docs/method.md). timm's
    converter, because torch's turns timm's BatchNormAct2d into a plain BatchNorm (its activation lost).
    Converts a copy (``module`` itself elsewhere): load its state back into ``module`` after training
    (the names are the same), so that what is kept and exported has plain BatchNorm layers."""
    if _start() and device().type == "cuda":
        import copy

        from restnet._compat import import_timm

        return import_timm().layers.convert_sync_batchnorm(copy.deepcopy(module))
    return module


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (and writes what it caches); the others run it after, and find it."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def _check_shared_cache() -> None:
    """Rank 0 writes a token where the cache is; every rank must read it back, or all stop with why."""
    import torch.distributed as dist

    from restnet.paths import cache_dir

    folder = cache_dir("distributed")
    token = [uuid.uuid4().hex if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(token)
    path = folder / f"{token[0]}.token"
    if dist.get_rank() == 0:
        path.write_text(token[0])
    dist.barrier()
    seen = path.is_file() and path.read_text() == token[0]
    ok = torch.tensor([1 if seen else 0], device=device())
    dist.all_reduce(ok, dist.ReduceOp.MIN)
    dist.barrier()
    if dist.get_rank() == 0:
        path.unlink(missing_ok=True)
    if not int(ok):
        raise RuntimeError(
            f"the restnet cache folder {folder.parent} is not the same for every rank (rank {dist.get_rank()} on "
            f"{socket.gethostname()} {'sees' if seen else 'does not see'} the file rank 0 wrote): under torchrun "
            "rank 0 alone writes caches and the others read them, so set RESTNET_CACHE to a folder on a "
            "filesystem every machine mounts (e.g. NFS)")

"""Linear CKA between every block of one model and every block of another.

Why it is shaped this way: CKA of all (i, j) pairs only needs one centred Gram
matrix per block (b x b, independent of feature width), so one forward pass
per batch per model yields every block's Gram, and every pair comes out of
one matmul of the stacked, flattened Grams (Nguyen et al. 2021). Features
never need to be kept beyond their own block. Everything after the features
is float64.

Estimators:
  ``hsic``      the paper's: per batch of b, HSIC(K, L) = tr(KHLH) / (b-1)^2,
                CKA per batch, averaged over ``repeats`` batches (b = 256, 5).
  ``unbiased``  the unbiased minibatch HSIC (Song et al. 2012, as used by
                Nguyen et al. 2021): HSIC values averaged over batches, CKA
                formed once from the averages; less biased for small b.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from restnet import distributed
from restnet.anchors.blocks import BlockModel
from restnet.progress import bar

ESTIMATORS = ("hsic", "unbiased")
MIN_BATCH = 4


def gram(features: torch.Tensor) -> torch.Tensor:
    """Linear Gram matrix X Xᵀ of one block's features, flattened per example, float64."""
    x = features.reshape(features.shape[0], -1).to(torch.float64)
    return x @ x.T


def _check_batch(b: int) -> None:
    if b < MIN_BATCH:
        raise ValueError(f"CKA needs batches of at least {MIN_BATCH} examples (the unbiased HSIC divides by b-3), got {b}")


def center(k: torch.Tensor) -> torch.Tensor:
    """H K H for a stack of Grams [..., b, b]."""
    return k - k.mean(-1, keepdim=True) - k.mean(-2, keepdim=True) + k.mean((-1, -2), keepdim=True)


def _unbiased_prep(k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(A_K, K~) for Grams [n, b, b], such that HSIC_1(K, L) = <A_K, L~> / (b(b-3)).

    HSIC_1 = [tr(K~L~) + 1ᵀK~1 1ᵀL~1 / ((b-1)(b-2)) - 2/(b-2) 1ᵀK~L~1] / (b(b-3)),
    with K~ the Gram with a zeroed diagonal. Every term is linear in L~, so it is
    <A_K, L~> with A_K = K~ + (1ᵀK~1)/((b-1)(b-2)) 11ᵀ - (1/(b-2)) (K~1 1ᵀ + 1 1ᵀK~).
    """
    b = k.shape[-1]
    kt = k.clone()
    kt.diagonal(dim1=-2, dim2=-1).zero_()
    total = kt.sum((-1, -2), keepdim=True)
    rows = kt.sum(-1, keepdim=True)  # K~1, [n, b, 1]
    a = kt + total / ((b - 1) * (b - 2)) - (rows + rows.transpose(-1, -2)) / (b - 2)
    return a, kt


def hsic_matrices(grams_a: torch.Tensor, grams_b: torch.Tensor, estimator: str = "hsic"):
    """(HSIC_ab [La, Lb], HSIC_aa [La], HSIC_bb [Lb]) for one batch of stacked Grams."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown CKA estimator {estimator!r}; choose one of {ESTIMATORS}")
    b = grams_a.shape[-1]
    _check_batch(b)
    if estimator == "hsic":
        ca = center(grams_a).reshape(grams_a.shape[0], -1)
        cb = center(grams_b).reshape(grams_b.shape[0], -1)
        scale = 1.0 / (b - 1) ** 2
        return (ca @ cb.T) * scale, (ca * ca).sum(-1) * scale, (cb * cb).sum(-1) * scale
    ua, ka = _unbiased_prep(grams_a)
    ub, kb = _unbiased_prep(grams_b)
    scale = 1.0 / (b * (b - 3))
    ua, ka = ua.reshape(ua.shape[0], -1), ka.reshape(ka.shape[0], -1)
    ub, kb = ub.reshape(ub.shape[0], -1), kb.reshape(kb.shape[0], -1)
    return (ua @ kb.T) * scale, (ua * ka).sum(-1) * scale, (ub * kb).sum(-1) * scale


def cka_from_hsic(ab: torch.Tensor, aa: torch.Tensor, bb: torch.Tensor) -> torch.Tensor:
    denom = torch.sqrt(torch.clamp(aa[:, None] * bb[None, :], min=1e-300))
    return ab / denom


def cka(x: torch.Tensor, y: torch.Tensor, estimator: str = "hsic") -> float:
    """CKA of two feature batches [b, ...] (the same b examples)."""
    ab, aa, bb = hsic_matrices(gram(x)[None], gram(y)[None], estimator)
    return float(cka_from_hsic(ab, aa, bb)[0, 0])


@torch.no_grad()
def block_grams(model: BlockModel, x: torch.Tensor) -> torch.Tensor:
    """Grams of every block output [L, b, b], from one forward pass."""
    h = model.stem(x)
    out = []
    for blk in model.blocks:
        h = blk(h)
        out.append(gram(h))
    return torch.stack(out)


@dataclass
class CKAResult:
    matrix: torch.Tensor  # [La, Lb] float64, row i = block i of model a
    estimator: str
    batch_size: int
    repeats: int


def cka_matrix(
    model_a: BlockModel,
    model_b: BlockModel,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    estimator: str = "hsic",
) -> CKAResult:
    """CKA of every block of ``model_a`` with every block of ``model_b``.

    ``batches`` yields (input for a, input for b): the same examples, each
    preprocessed for its own model. With ``hsic`` the per-batch CKA matrices
    are averaged; with ``unbiased`` the HSIC values are. Under torchrun each rank
    passes its own batches (restnet.distributed.shard) and the sums and counts are
    added over ranks, so every rank gets the matrix of all batches.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown CKA estimator {estimator!r}; choose one of {ESTIMATORS}")
    model_a.eval()
    model_b.eval()
    la, lb = len(model_a.blocks), len(model_b.blocks)
    acc = (torch.zeros(la, lb, dtype=torch.float64),) if estimator == "hsic" else \
        (torch.zeros(la, lb, dtype=torch.float64), torch.zeros(la, dtype=torch.float64),
         torch.zeros(lb, dtype=torch.float64))
    n, b = 0, 0
    for xa, xb in bar(batches, desc="CKA batches"):
        if xa.shape[0] != xb.shape[0]:
            raise ValueError(f"the two inputs of a batch differ in size ({xa.shape[0]} vs {xb.shape[0]})")
        _check_batch(xa.shape[0])
        b = b or xa.shape[0]
        ab, aa, bb = hsic_matrices(block_grams(model_a, xa), block_grams(model_b, xb), estimator)
        part = (cka_from_hsic(ab, aa, bb),) if estimator == "hsic" else (ab, aa, bb)
        acc = tuple(s + p.cpu() for s, p in zip(acc, part))
        n += 1
    acc = tuple(distributed.all_reduce(s) for s in acc)
    n = int(distributed.all_reduce(torch.tensor(n)))
    b = int(distributed.all_reduce(torch.tensor(b), "max"))
    if n == 0:
        raise ValueError("no batches to compute CKA on")
    if estimator == "hsic":
        matrix = acc[0] / n
    else:
        matrix = cka_from_hsic(*(s / n for s in acc))
    return CKAResult(matrix, estimator, b, n)

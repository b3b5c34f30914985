"""CKA: properties of the estimator and agreement with the plain formula."""
from __future__ import annotations

import pytest
import torch

from restnet.anchors.blocks import BlockModel
from restnet.cka import cka, cka_matrix

torch.set_default_dtype(torch.float32)


def reference_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """The paper's formula, written out with an explicit centring matrix H."""
    b = x.shape[0]
    f1, f2 = x.reshape(b, -1).double(), y.reshape(b, -1).double()
    k, l_ = f1 @ f1.T, f2 @ f2.T
    h = torch.eye(b, dtype=torch.float64) - torch.ones(b, b, dtype=torch.float64) / b

    def hsic(p, q):
        return torch.trace(p @ h @ q @ h) / (b - 1) ** 2

    return float(hsic(k, l_) / torch.sqrt(hsic(k, k) * hsic(l_, l_)))


def reference_unbiased_hsic(k: torch.Tensor, l_: torch.Tensor) -> float:
    """Song et al. (2012) unbiased HSIC, term by term."""
    n = k.shape[0]
    kt, lt = k.clone(), l_.clone()
    kt.fill_diagonal_(0)
    lt.fill_diagonal_(0)
    one = torch.ones(n, 1, dtype=k.dtype)
    t1 = torch.trace(kt @ lt)
    t2 = (one.T @ kt @ one) * (one.T @ lt @ one) / ((n - 1) * (n - 2))
    t3 = 2.0 / (n - 2) * (one.T @ kt @ lt @ one)
    return float((t1 + t2 - t3) / (n * (n - 3)))


@pytest.fixture
def feats():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 8, 3, 3, generator=g)
    y = torch.tanh(x.reshape(32, -1) @ torch.randn(72, 20, generator=g)) + 0.3 * torch.randn(32, 20, generator=g)
    return x, y


@pytest.mark.parametrize("estimator", ["hsic", "unbiased"])
def test_self_similarity_is_one(feats, estimator):
    assert cka(feats[0], feats[0], estimator) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("estimator", ["hsic", "unbiased"])
def test_invariant_to_orthogonal_transform_and_isotropic_scaling(feats, estimator):
    x, y = feats
    q, _ = torch.linalg.qr(torch.randn(20, 20, generator=torch.Generator().manual_seed(5), dtype=torch.float64))
    base = cka(x, y, estimator)
    assert cka(x, (y.double() @ q), estimator) == pytest.approx(base, abs=1e-7)
    assert cka(x * 7.5, y * 0.01, estimator) == pytest.approx(base, abs=1e-7)
    # ...but not to an arbitrary (non-orthogonal, anisotropic) linear map: the test can fail.
    aniso = torch.diag(torch.logspace(-3, 3, 20, dtype=torch.float64))
    assert abs(cka(x, y.double() @ aniso, estimator) - base) > 1e-3


def test_matches_plain_formula(feats):
    x, y = feats
    assert cka(x, y) == pytest.approx(reference_cka(x, y), abs=1e-6)


def test_unbiased_matches_term_by_term_formula(feats):
    from restnet.cka import gram, hsic_matrices

    x, y = feats
    kx, ky = gram(x), gram(y)
    ab, aa, bb = hsic_matrices(kx[None], ky[None], "unbiased")
    assert float(ab[0, 0]) == pytest.approx(reference_unbiased_hsic(kx, ky), rel=1e-9)
    assert float(aa[0]) == pytest.approx(reference_unbiased_hsic(kx, kx), rel=1e-9)


def test_tiny_batches_are_refused():
    with pytest.raises(ValueError, match="at least 4"):
        cka(torch.randn(3, 5), torch.randn(3, 5))


def _toy_models():
    torch.manual_seed(0)
    conv = lambda i, o: torch.nn.Sequential(torch.nn.Conv2d(i, o, 3, padding=1), torch.nn.ReLU())  # noqa: E731
    a = BlockModel("a", "cnn", torch.nn.Identity(), [conv(3, 8), conv(8, 8), conv(8, 16)], torch.nn.Identity())
    b = BlockModel("b", "cnn", torch.nn.Identity(), [conv(3, 4), conv(4, 12)], torch.nn.Identity())
    return a, b


@pytest.mark.parametrize("estimator", ["hsic", "unbiased"])
def test_all_pairs_match_per_pair_reference(estimator):
    a, b = _toy_models()
    g = torch.Generator().manual_seed(2)
    batches = [(x, x * 2.0) for x in (torch.randn(16, 3, 8, 8, generator=g) for _ in range(3))]
    res = cka_matrix(a, b, batches, estimator)
    assert res.matrix.shape == (3, 2) and res.repeats == 3 and res.batch_size == 16
    if estimator == "hsic":
        ref = torch.zeros(3, 2, dtype=torch.float64)
        for xa, xb in batches:
            fa, fb = a.block_outputs(xa), b.block_outputs(xb)
            ref += torch.tensor([[reference_cka(p, q) for q in fb] for p in fa], dtype=torch.float64)
        ref /= len(batches)
    else:
        from restnet.cka import gram

        ref = torch.zeros(3, 2, dtype=torch.float64)
        sa, sb = torch.zeros(3, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
        for xa, xb in batches:
            ga = [gram(f) for f in a.block_outputs(xa)]
            gb = [gram(f) for f in b.block_outputs(xb)]
            ref += torch.tensor([[reference_unbiased_hsic(p, q) for q in gb] for p in ga], dtype=torch.float64)
            sa += torch.tensor([reference_unbiased_hsic(p, p) for p in ga], dtype=torch.float64)
            sb += torch.tensor([reference_unbiased_hsic(q, q) for q in gb], dtype=torch.float64)
        ref = ref / torch.sqrt(sa[:, None] * sb[None, :])
    assert torch.allclose(res.matrix, ref, atol=1e-6)


def test_unknown_estimator():
    a, b = _toy_models()
    with pytest.raises(ValueError, match="unknown CKA estimator"):
        cka_matrix(a, b, [], "rbf")

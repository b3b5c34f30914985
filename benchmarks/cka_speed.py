"""CKA speed: restnet's all-pairs CKA against (a) the bare forward passes and (b) a
plain per-pair, hook-based implementation, measured in one run.

Targets (issue #4): CKA time / bare forwards <= 1.25; per-pair time / ours >= 10.

    .venv/bin/python benchmarks/cka_speed.py [--batch 32 --repeats 1 --resolution 64 --threads 2]

The per-pair baseline runs 2 x La x Lb forwards (672 for the default pair): minutes.
"""
from __future__ import annotations

import argparse
import time

import _common  # noqa: F401  (sets sys.path)
import torch

from restnet.anchors import create_anchor
from restnet.cka import cka_matrix


def per_pair_hook_cka(model_a, model_b, batches) -> torch.Tensor:
    """The plain way: for every (i, j), hook block i and block j, run both models, CKA by the formula."""
    la, lb = model_a.num_blocks, model_b.num_blocks
    out = torch.zeros(la, lb, dtype=torch.float64)
    for xa, xb in batches:
        b = xa.shape[0]
        h = torch.eye(b, dtype=torch.float64) - torch.full((b, b), 1.0 / b, dtype=torch.float64)
        for i in range(la):
            for j in range(lb):
                got = {}
                ha = model_a.blocks[i].register_forward_hook(lambda m, inp, o: got.__setitem__("a", o))
                hb = model_b.blocks[j].register_forward_hook(lambda m, inp, o: got.__setitem__("b", o))
                with torch.no_grad():
                    model_a(xa)
                    model_b(xb)
                ha.remove()
                hb.remove()
                fa = got["a"].reshape(b, -1).double()
                fb = got["b"].reshape(b, -1).double()
                k, l_ = fa @ fa.T, fb @ fb.T

                def hsic(p, q):
                    return torch.trace(p @ h @ q @ h) / (b - 1) ** 2

                out[i, j] += hsic(k, l_) / torch.sqrt(hsic(k, k) * hsic(l_, l_))
    return out / len(batches)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--front", default="tf_efficientnet_lite2")
    ap.add_argument("--back", default="tf_efficientnet_lite0")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", dest="out", default=None, help="Also write the JSON here.")
    args = ap.parse_args()
    env = _common.setup_threads(args.threads)
    a = create_anchor(args.front, pretrained=False).eval()
    b = create_anchor(args.back, pretrained=False).eval()
    g = torch.Generator().manual_seed(0)
    batches = [(x, x.clone()) for x in (torch.randn(args.batch, 3, args.resolution, args.resolution, generator=g)
                                         for _ in range(args.repeats))]
    with torch.no_grad():  # warm-up
        a(batches[0][0][:4])
        b(batches[0][1][:4])

    def bare():
        with torch.no_grad():
            for xa, xb in batches:
                a(xa)
                b(xb)

    def timed(fn, n=3):
        best = float("inf")
        for _ in range(n):
            t = time.perf_counter()
            r = fn()
            best = min(best, time.perf_counter() - t)
        return best, r

    t_bare, _ = timed(bare)
    t_ours, ours = timed(lambda: cka_matrix(a, b, batches).matrix)
    t_plain, plain = timed(lambda: per_pair_hook_cka(a, b, batches), n=1)
    agree = float((ours - plain).abs().max())
    rows = [
        {"method": "bare forward passes (both models)", "seconds": t_bare, "ratio": 1.0},
        {"method": "restnet all-pairs CKA", "seconds": t_ours, "ratio": t_ours / t_bare},
        {"method": "plain per-pair hook CKA", "seconds": t_plain, "ratio": t_plain / t_bare},
    ]
    summary = {
        "config": vars(args), "env": env, "pairs": a.num_blocks * b.num_blocks,
        "cka_over_forward": t_ours / t_bare, "cka_over_forward_target": 1.25,
        "plain_over_ours": t_plain / t_ours, "plain_over_ours_target": 10.0,
        "max_abs_difference_vs_plain": agree,
    }
    _common.emit("CKA speed", rows, summary, args.out)


if __name__ == "__main__":
    main()

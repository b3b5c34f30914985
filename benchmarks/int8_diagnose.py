"""Where int8 loses agreement with fp32: simulated PT2E int8 (the converted program run by torch) per knob.

Every knob is measured on the validation images carved from the training split (the recipe is chosen
there; benchmarks/int8.py reports the chosen one on the test split from the real files). Calibration
images come from the training split without the validation images, as in a pack.

  .venv/bin/python benchmarks/int8_diagnose.py --package artifacts/rpi4 --images 2000 \
      --recipes base,clamp,clamp+c1024 --parts stem,stitch,head,dw --json out.json

A recipe is '+'-joined knobs: clamp (quantise the ReLU6 output, not the conv output before it),
c<N> (N calibration images), ft / ft<N> (fine-tune the weights through the quantisers on N images;
then kl / mse: the loss, KL of the softmax or squared logit error (the default), flip: the mirrored
images too, ep<N>: N epochs, lr<X>: Adam's rate, e.g. lr2.5e-6),
obs=<hist|minmax|ma|pct> (activation observer), pt (per-tensor weights),
fp32=<part> (leave one part unquantised), only=<part> (quantise one part only).
Parts: stem, front, stitch, back, head, dw (depthwise convs), first (the first conv), entry (every conv up
to the first depthwise one), classifier (the last linear). The pack's default recipe is
clamp+fp32=entry+fp32=classifier+ft.

Analyses of each recipe's program, beside its agreement:
  --logit-error  the std of (int8 - fp32) logits, and the agreement of fp32 + a x (int8 - fp32) for
                 smaller a: how much the error must shrink for a target agreement;
  --bypass       the agreement with each activation quantiser removed in turn (its dequantize reads the
                 float tensor), then with all of them: whether a few layers carry the loss;
  --budget       the logit error each activation quantiser adds alone (all the others skipped), over the
                 program with none: where the error comes from, by a measure less noisy than agreement
                 (it chose the float entry and classifier, docs/int8.md);
  --ties K       the agreement of K copies whose rounding ties fall otherwise (float-level noise on the
                 biases and scales): the spread any one figure, simulated or real, is drawn from;
  --file         the program lowered to the real .int8.pte and run by ExecuTorch.
Judge a recipe by --ties (or --file), not by one simulation: the int8 program is chaotic at rounding
ties, and the real file is one more draw (docs/int8.md, "The file is not its simulation").
And, per member (with --floor): how fragile the fp32 member's own decisions are, i.e. how little int8
noise it takes to change them: its input quantised exactly as the int8 program quantises it (nothing else),
uniform input noise of +-0.5 and +-1 grey level, and its weights rounded to int8 per channel (nothing
else).
"""
from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import emit, setup_threads
from _int8_members import file_logits, load_members

from restnet.data import to_model_input
from restnet.export import get_format, int8_recipe
from restnet.export.base import Quantized
from restnet.export.int8 import get_route, quantize
from restnet.export.int8_input import activation_quantize_nodes


def inputs(task, split, spec, n: int | None = None, seed: int = 0) -> torch.Tensor:
    s = split.subset(n, seed) if n else split
    return torch.cat([to_model_input(imgs, spec) for imgs, _ in task.raw_loader(s, 250)])


@torch.no_grad()
def logits(model, x: torch.Tensor, batch: int = 250) -> torch.Tensor:
    return torch.cat([model(x[k:k + batch]) for k in range(0, len(x), batch)])


def predict(model, x: torch.Tensor) -> np.ndarray:
    return logits(model, x).argmax(-1).numpy()


def simulate(model, recipe: int8_recipe.Recipe, calib: torch.Tensor, tune: torch.Tensor | None = None,
             spec=None) -> torch.nn.Module:
    """The XNNPACK route's quantised program before lowering, made by the pack's own stages
    (restnet.export.int8.quantize: fine-tuned on ``tune`` when the recipe says so) and run by torch."""
    example = calib[:1] if recipe.batch1 else calib[:64]  # the route calibrates in slices of this batch
    return quantize(get_route("pte"), model, example, [calib], recipe, tune, log=print, spec=spec).program


SHRINK = (0.75, 0.5, 0.35, 0.25)


def logit_error(fp32: torch.Tensor, q: torch.Tensor) -> dict:
    """The int8 logits' distance from fp32, and the agreement a smaller error of the same shape would give."""
    ref, e = fp32.argmax(-1), q - fp32
    top2 = fp32.topk(2, -1).values
    return {"logit_err_std": float(e.std()), "logit_abs_max": float(fp32.abs().max()),
            "margin_p02": float((top2[:, 0] - top2[:, 1]).quantile(0.02)),
            **{f"agreement_if_error_x{a}": float(((fp32 + a * e).argmax(-1) == ref).float().mean()) for a in SHRINK}}


def tie_rows(program: torch.nn.Module, x: torch.Tensor, fp32: torch.Tensor, k: int, rel: float = 1e-6) -> dict:
    """The program's agreement with fp32 under k float-level perturbations (relative size ``rel``): such copies
    move the logits as much as lowering to the real .int8.pte does, so the file is one more draw from their
    spread (docs/int8.md, "The file is not its simulation")."""
    gen = torch.Generator().manual_seed(0)
    ref, agree = fp32.argmax(-1), []
    for _ in range(k):
        p = copy.deepcopy(program)
        with torch.no_grad():
            for t in [*p.parameters(), *p.buffers()]:
                if t.dim() == 1 and t.is_floating_point():
                    t.mul_(1 + rel * torch.randn(t.shape, generator=gen, dtype=t.dtype))
        agree.append(float((logits(p, x).argmax(-1) == ref).float().mean()))
    return {"ties_agreement_mean": sum(agree) / k, "ties_agreement_min": min(agree), "ties_agreement_max": max(agree)}


def file_rows(program: torch.nn.Module, x: torch.Tensor, fp32: torch.Tensor, sim: torch.Tensor) -> dict:
    """The simulated program lowered to a real .int8.pte (the route's own export) and run by ExecuTorch,
    one image at a time as a device runs it."""
    fmt = get_format("pte")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.int8.pte"
        get_route("pte").export(Quantized(copy.deepcopy(program)), x[:1], path)
        real = torch.from_numpy(file_logits(fmt.load(path, 2), x, fmt.input_layout))
    ref, got = fp32.argmax(-1), real.argmax(-1)
    return {"file_agreement": float((got == ref).float().mean()),
            "file_vs_sim_agreement": float((got == sim.argmax(-1)).float().mean()),
            "file_logit_err_std": float((real - fp32).std()), "file_minus_sim_std": float((real - sim).std())}


def activation_quantisers(program: torch.fx.GraphModule) -> list[str]:
    return [n.name for n in activation_quantize_nodes(program)]


def _row(tag: str, fp32: torch.Tensor, out: torch.Tensor) -> dict:
    return {"perturbation": tag, "agreement": float((out.argmax(-1) == fp32.argmax(-1)).float().mean()),
            "logit_err_std": float((out - fp32).std())}


def _int8_weights(model: torch.nn.Module) -> torch.nn.Module:
    """A copy whose conv / linear weights are rounded to symmetric int8 per output channel (as the
    quantizers' weights are; BN folding only scales each channel, so folding first changes nothing)."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)):
                w = mod.weight
                s = (w.abs().flatten(1).amax(1).clamp_min(1e-12) / 127).view(-1, *[1] * (w.dim() - 1))
                w.copy_(torch.round(w / s).clamp(-127, 127) * s)
    return model


def floor_rows(model, spec, x: torch.Tensor, fp32: torch.Tensor, program: torch.fx.GraphModule) -> list[dict]:
    """Agreement of the fp32 member under perturbations smaller than a whole int8 program's. The first
    is part of every fully integer program: what it changes is lost before any layer is quantised."""
    first = activation_quantize_nodes(program)[0]  # the image's (after the stem's padding, on lite models)
    s, z = float(first.args[1]), int(first.args[2])
    std = torch.tensor(spec.std).view(1, 3, 1, 1)
    grey = 1 / 255 / std  # one grey level of the uint8 image, in model-input units
    noise = torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    rows = [_row(f"input quantised as int8 (scale {s / float(grey.mean()):.2f} grey levels) only", fp32,
                 logits(model, (torch.clamp(torch.round(x / s) + z, -128, 127) - z) * s)),
            *[_row(f"input noise +-{a} grey level", fp32, logits(model, x + a * noise * grey)) for a in (0.5, 1)],
            _row("weights int8 per channel only", fp32, logits(_int8_weights(model), x))]
    for r in rows:
        print(r, flush=True)
    return rows


def bypassed(program: torch.fx.GraphModule, names: list[str]) -> torch.fx.GraphModule:
    """A copy of ``program`` in which the named activation quantisers are skipped."""
    g = copy.deepcopy(program)
    for node in [n for n in g.graph.nodes if n.name in set(names)]:
        for user in list(node.users):
            if "dequantize" in str(user.target):
                user.replace_all_uses_with(node.args[0])
    g.graph.eliminate_dead_code()
    g.recompile()
    return g


def bypass_rows(program, x: torch.Tensor, ref: np.ndarray) -> list[dict]:
    names = activation_quantisers(program)
    rows = []
    for name in [*names, "ALL"]:
        got = predict(bypassed(program, names if name == "ALL" else [name]), x)
        rows.append({"without": name, "agreement": float((got == ref).mean())})
        print(rows[-1], flush=True)
    return rows


def budget_rows(program, x: torch.Tensor, fp32: torch.Tensor, out: torch.Tensor) -> dict:
    """Each activation quantiser kept alone: the std of its logits' change over the program with none (the
    weights' own error excluded); ``out``: the whole program's logits. Removing one at a time by agreement hid
    the stem's quantiser (docs/int8.md, "How far 98 % is")."""
    names = activation_quantisers(program)
    none = logits(bypassed(program, names), x)
    nodes = {n.name: n for n in program.graph.nodes}
    rows = []
    for name in names:
        src = nodes[name].args[0]
        alone = logits(bypassed(program, [k for k in names if k != name]), x)
        rows.append({"quantiser": name, "of": src.name, "module": int8_recipe.module_path(src) or "",
                     "scale": float(nodes[name].args[1]), "alone_logit_err_std": float((alone - none).std())})
    rows.sort(key=lambda r: -r["alone_logit_err_std"])
    for r in rows[:10]:
        print(r, flush=True)
    return {"logit_err_std": float((out - fp32).std()),
            "weights_only_logit_err_std": float((none - fp32).std()), "quantisers": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--package", type=Path, default=Path("artifacts/rpi4"))
    ap.add_argument("--images", type=int, default=2000, help="seeded validation images per measurement")
    ap.add_argument("--recipes", default="base,clamp")
    ap.add_argument("--members", default="", help="comma-separated member indices (default: all)")
    ap.add_argument("--split", default="val", choices=("val", "test"))
    ap.add_argument("--json", default=None)
    ap.add_argument("--logit-error", action="store_true", help="also the logit error and what shrinking it gives")
    ap.add_argument("--bypass", action="store_true", help="also each activation quantiser removed in turn")
    ap.add_argument("--floor", action="store_true", help="also the fp32 member's agreement under small perturbations")
    ap.add_argument("--budget", action="store_true",
                    help="also the logit error each activation quantiser adds alone (the others skipped)")
    ap.add_argument("--ties", type=int, default=0, metavar="K",
                    help="also K copies of the program with every 1-D fp32 tensor (biases, per-channel scales) times "
                         "1 + 1e-6 N(0, 1): rounding ties fall otherwise, as in another runtime; their agreement with "
                         "fp32 (mean, min, max) is the spread a single simulated or real figure is drawn from")
    ap.add_argument("--file", action="store_true",
                    help="also lower each recipe's program to the .int8.pte the pack would write and run that file: "
                         "its agreement with fp32 and with the simulation (what XNNPACK's kernels change)")
    a = ap.parse_args()
    env = setup_threads(2)
    runner, members = load_members(a.package)
    if a.members:
        members = [members[int(i)] for i in a.members.split(",")]
    task = runner.task
    split = task.val if a.split == "val" else task.report
    rows, bypass, floor, budget = [], {}, {}, {}
    for m in members:
        x = inputs(task, split, m.spec, a.images, 7)
        y = np.concatenate([lab.numpy() for _, lab in task.raw_loader(split.subset(a.images, 7), 250)])
        fp32 = logits(m.model, x)
        ref = fp32.argmax(-1).numpy()
        for name in a.recipes.split(","):
            r = int8_recipe.parse(name)
            calib = inputs(task, task.train, m.spec, r.calibration, runner.exp.seed + 17)
            t = time.perf_counter()
            tune = inputs(task, task.train, m.spec, r.finetune.images, runner.exp.seed + 29) \
                if r.finetune.images else None
            q = simulate(m.model, r, calib, tune, m.spec)
            out = logits(q, x)
            got = out.argmax(-1).numpy()
            rows.append({"member": m.name, "recipe": name, "n": len(x), "fp32_top1": float((ref == y).mean()),
                         "int8_top1": float((got == y).mean()), "agreement": float((got == ref).mean()),
                         "seconds": time.perf_counter() - t})
            if a.logit_error:
                rows[-1].update(logit_error(fp32, out))
            if a.ties:
                rows[-1].update(tie_rows(q, x, fp32, a.ties))
            if a.file:
                rows[-1].update(file_rows(q, x, fp32, out))
            print(rows[-1], flush=True)
            if a.bypass:
                bypass[f"{m.name} {name}"] = bypass_rows(q, x, ref)
            if a.budget:
                budget[f"{m.name} {name}"] = budget_rows(q, x, fp32, out)
            if a.floor and m.name not in floor:
                floor[m.name] = floor_rows(m.model, m.spec, x, fp32, q)
    summary = {"split": a.split, "images": a.images, **({"bypass": bypass} if bypass else {}),
               **({"budget": budget} if budget else {}),
               **({"floor": floor} if floor else {}), **env}
    emit("int8_diagnose", rows, summary, a.json)


if __name__ == "__main__":
    main()

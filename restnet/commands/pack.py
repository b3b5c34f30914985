"""`restnet-pack` (also `restnet pack`) and `restnet inspect`."""
from __future__ import annotations

import os
from pathlib import Path

import click
from click.core import ParameterSource
from rich.table import Table

from restnet.commands.handler import KEPT, HandledCommand, debug_option
from restnet.commands.method import _stack, experiment_options, make_runner, training_options
from restnet.cost import METRICS
from restnet.export import names
from restnet.export.base import AGREEMENT_FLAG, percent

pack_options = _stack(
    click.option("--profile", "profile_name", required=True, metavar="NAME|PATH",
                 help="Device profile: a name from `restnet profiles` or a path to a .yaml file."),
    click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
                 help="Package folder [default: artifacts/<profile>]."),
    click.option("--format", "extra_formats", multiple=True, metavar="FMT[,FMT]",
                 help=f"Extra formats besides the profile backend's: {', '.join(names())}."),
    click.option("--tflite-converter", type=click.Choice(["litert-torch", "onnx2tf"]), default="litert-torch",
                 show_default=True, help="Converter for tflite profiles (litert-torch: faster here; onnx2tf: via ONNX and "
                                         "TensorFlow). Both files take NHWC input and carry TFLite metadata."),
    click.option("--metric", type=click.Choice(METRICS), default=None,
                 help="Cost metric; flops counts MACs (fvcore multiply-adds) [default: the profile's]."),
    click.option("--budget", "budgets", type=float, multiple=True,
                 help="A budget in the metric's unit (params, MACs, ms); repeatable [default: the profile's]."),
    click.option("--budgets-between", type=click.IntRange(min=1), default=None,
                 help="This many budgets evenly spaced between the anchors' costs [default: the profile's]."),
    click.option("--ladder", type=click.IntRange(min=1), default=None,
                 help="This many budgets from the small anchor up to the device's binding limit (latency target, "
                      "compute, RAM share, storage) [default: the profile's]."),
    click.option("--window", type=click.FloatRange(0.0, 1.0), default=None,
                 help="Beyond the paper: each budget only takes points costing >= budget - WINDOW x the distance "
                      "to the next lower budget (0 = off) [default: the profile's]."),
    click.option("--band", type=click.FloatRange(0.0, 1.0, max_open=True), default=None,
                 help="Beyond the paper: only points costing >= BAND x budget [default: the profile's]."),
    click.option("--threads", type=click.IntRange(min=1), default=None,
                 help="Threads for host latency [default: the profile's, at most this machine's cores]."),
    click.option("--anchors/--no-anchors", "include_anchors", default=True, show_default=True,
                 help="Also ship both anchors as variants (the two ends of the family)."),
    click.option("--keep-dominated", is_flag=True,
                 help="Also ship stitched members that a cheaper member, or the small anchor trained alike to the "
                      "members, beats on the validation images (McNemar's exact test, p < 0.01 after Bonferroni); "
                      "by default they are dropped and the log names them."),
    click.option("--int8/--no-int8", default=None,
                 help="Also ship an int8 file per variant for each format that has an int8 route (.int8.pte, "
                      ".int8.tflite; PT2E static, calibrated on 256 training images, ReLU6 ranges after the clamp, weights "
                      "fine-tuned through the quantisers towards fp32, the entry convs and the classifier left float (the "
                      "profile's int8: section); top-1 agreement with fp32 "
                      "reported on the validation split and, with the training images the pack leaves unused, "
                      f"checked: < {percent(AGREEMENT_FLAG)} flagged) [default: on when the profile's dtype is "
                      "int8]."),
    click.option("--probes", is_flag=True,
                 help="Also ship every anchor block and stitching-layer shape as its own program, for "
                      "`restnet-bench --blocks` (per-block latency prediction)."),
    click.option("--bundle", type=click.Choice(["files", "shared"]), default=None,
                 help="files: one file per variant; shared: the device format's variants as the methods (.pte) or "
                      "signatures (.tflite) of one file that stores the anchors' weights once [default: the "
                      "profile's bundle, files]."),
    click.option("--latency-table", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
                 help="A device latency table from restnet-bench [default: the profile's latency_table]: "
                      "variants it measured are marked measured; with block probes it predicts the latency "
                      "cost of every stitch point."),
    click.option("--sign-key", "sign_keys", multiple=True, metavar="KEY",
                 type=click.Path(exists=True, dir_okay=False, path_type=Path),
                 help="Sign the manifest with this Ed25519 private key (`restnet keygen`) into manifest.sig; "
                      "repeat to sign with several (key rotation: the old and the new key)."),
    click.option("--sequence", type=click.IntRange(min=1), default=None,
                 help="The package's release number; devices refuse one lower than they have installed "
                      "[default: one more than the package in --out, 1 for a new folder]."),
)


def _formats(backend_fmt: str, extra: tuple[str, ...]) -> tuple[str, ...]:
    from restnet.export import formats

    table = formats()
    out = [backend_fmt]
    for item in extra:
        for f in (x.strip() for x in item.split(",") if x.strip()):
            if f not in table:
                raise click.BadParameter(f"unknown format {f!r}; choose from {', '.join(table)}",
                                         param_hint="--format")
            if f not in out:
                out.append(f)
    return tuple(out)


def make_request(profile_name, out, extra_formats, metric, budgets, budgets_between, band, threads,
                 include_anchors, train_overrides, tflite_converter="litert-torch", probes=False, latency_table=None,
                 int8=None, window=None, ladder=None, bundle=None, keep_dominated=False, sign_keys=(), sequence=None):
    """Everything resolved and validated before any heavy work (the signing keys are read here too)."""
    from restnet.package.request import BACKEND_FORMAT, PackRequest
    from restnet.package.signing import load_signing_key
    from restnet.profiles import ProfileError, load_profile

    prof = load_profile(profile_name)
    b = prof.budgets
    backend_fmt = BACKEND_FORMAT[prof.backend]
    if backend_fmt == "tflite" and tflite_converter == "onnx2tf":
        backend_fmt = "tflite-onnx2tf"
    metric = metric or b.metric
    if budgets:
        vals = tuple(budgets)
    elif budgets_between is None and b.values is not None and metric == b.metric:
        vals = tuple(b.values)
    else:
        vals = ()
    if not vals and budgets_between is None:
        ladder = ladder or b.ladder or 0
    else:
        ladder = 0  # budgets given on the command line win over the profile's ladder
    for v in vals:
        if v <= 0:
            raise click.BadParameter(f"budgets must be positive, got {v:g}", param_hint="--budget")
    req = PackRequest(profile=prof, out=out or Path("artifacts") / prof.name,
                      formats=_formats(backend_fmt, extra_formats), metric=metric, budgets=vals,
                      between=budgets_between or b.between or 3, ladder=ladder, band=b.band if band is None else band,
                      window=b.window if window is None else window,
                      threads=threads or min(prof.threads, os.cpu_count() or 1), include_anchors=include_anchors,
                      keep_dominated=keep_dominated,
                      train_overrides=train_overrides, probes=probes,
                      int8=prof.dtype == "int8" if int8 is None else int8,
                      latency_table=latency_table or (Path(prof.latency_table) if prof.latency_table else None),
                      bundle=bundle or prof.bundle, sequence=sequence,
                      sign_keys=tuple(load_signing_key(k) for k in sign_keys))
    if req.latency_table is not None and not req.latency_table.is_file():
        raise ProfileError(f"profile {prof.name}: latency_table {req.latency_table} does not exist; fix the path "
                           "(relative to the working folder) or remove the field")
    req.check()
    return req


def _final_table(console, manifest: dict, path: Path) -> None:
    from restnet.package.firmware import latency_text

    m = manifest
    t = Table(title=f"{m['profile']['name']} package: {len(m['variants'])} variants "
                    f"({m['profile']['metric']} budgets; anchors {m['anchors']['front']['name']} "
                    f"{m['anchors']['front']['accuracy']:.2%}, {m['anchors']['back']['name']} "
                    f"{m['anchors']['back']['accuracy']:.2%})")
    split = m["task"].get("accuracy_split", "val")
    for c in ("id", "kind", "CKA", "params", "MACs", f"{split} top-1", "latency", "RAM est.", "files"):
        t.add_column(c, justify="left" if c in ("id", "kind", "files", "latency") else "right")
    for v in m["variants"]:
        t.add_row(v["id"], v["kind"], "" if v.get("cka") is None else f"{v['cka']:.3f}",
                  f"{v['params'] / 1e6:.2f} M", f"{v['flops'] / 1e6:.0f} M", f"{v['accuracy']:.2%}", latency_text(v),
                  f"{v['peak_ram_mb']:.0f} MB", ", ".join(f"{f['format']}{' (shared)' if f.get('method') else ''} "
                                                           f"{f['size'] / 2**20:.1f} MB" for f in v["files"]))
    console.print(t)
    from restnet.package.family import describe, family_stats

    console.print(describe(family_stats(m["variants"])))


def markdown_table(m: dict) -> str:
    """The package as a README-ready table (what the README's rpi4 table is made from)."""
    split = m["task"].get("accuracy_split", "val")
    rows = [f"| id | stitch point | CKA | params | MACs | trainable | {split} top-1 | host | device | file | "
            "max \\|Δ\\| / top-1 agreement vs eager (val) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for v in m["variants"]:
        f, lat = v["files"][0], v["latency"]
        if v["kind"] == "stitched":
            point = (f"{_short(v['front']['anchor'])}[:{v['front']['blocks'][1] + 1}] → "
                     f"{_short(v['back']['anchor'])}[{v['back']['blocks'][0]}:]")
        else:
            point = f"anchor {v['front']['anchor']}"
        cka = "" if v.get("cka") is None else f"{v['cka']:.3f}"
        trainable = f"{v['trainable_params'] / 1e6:.3f} M" if v["trainable_params"] else "–"
        source = "est." if lat[-1]["source"] == "estimated" else lat[-1]["source"]
        device = f"{lat[-1]['ms']:.1f} ms ({source})" if len(lat) > 1 else "–"
        rows.append(f"| `{v['id']}` | {point} | {cka} | {v['params'] / 1e6:.2f} M | {v['flops'] / 1e6:.1f} M | "
                    f"{trainable} | {v['accuracy']:.2%} | {lat[0]['ms']:.2f} ms | {device} | "
                    f"{f['size'] / 2**20:.1f} MB | {f['max_abs_diff']:.1e} / {f['top1_agreement']:.2%} |")
    return "\n".join(rows)


def _short(name: str) -> str:
    return name.removeprefix("tf_efficientnet_")


def pack_command(console, log_console):
    @click.command(name="pack", cls=HandledCommand, context_settings={"help_option_names": ["-h", "--help"]})
    @pack_options
    @experiment_options
    @training_options
    @debug_option
    def pack(profile_name, out, extra_formats, tflite_converter, metric, budgets, budgets_between, ladder, window,
             band, threads, include_anchors, keep_dominated, int8, probes, bundle, latency_table, sign_keys, sequence,
             strategy, epochs, lr, batch_size, no_ls_init, **opts):
        """Build a per-device package: CKA, selection, stitch training, verified export, manifest.

        Every stage reuses what is cached, so a repeated pack takes seconds to a minute or two."""
        over = {k: v for k, v in {"lr": lr, "batch_size": batch_size}.items() if v is not None}
        over.update(strategy=strategy, epochs=epochs, ls_init=not no_ls_init)
        req = make_request(profile_name, out, extra_formats, metric, budgets, budgets_between, band, threads,
                           include_anchors, over, tflite_converter, probes, latency_table, int8, window, ladder,
                           bundle, keep_dominated, sign_keys, sequence)
        ctx = click.get_current_context()
        if ctx.get_parameter_source("resolution") == ParameterSource.DEFAULT:
            opts["resolution"] = req.profile.resolution
        runner = make_runner(opts, log_console)
        from restnet.package.build import pack as run_pack

        ctx.meta[KEPT] = (f"{req.out} is as it was before this pack (the new package is swapped in only when "
                          "complete); finished stages stay cached, so the same command resumes from there")

        path, manifest = run_pack(runner, req, log=lambda m: log_console.print(f"[cyan]{m}[/]"))
        _final_table(console, manifest, path)
        console.print(f"package: {path.resolve()}")

    return pack


def register(main, console, log_console):
    main.add_command(pack_command(console, log_console))

    @main.command()
    @click.argument("package", type=click.Path(exists=True, file_okay=False, path_type=Path))
    @click.option("--markdown", is_flag=True, help="Also print the variants as a Markdown table (for READMEs).")
    @click.option("--trusted-key", "trusted_keys", multiple=True, metavar="PUB",
                  type=click.Path(exists=True, dir_okay=False, path_type=Path),
                  help="Accept the package only if this Ed25519 public key signed it, checked before anything "
                       "else (repeatable: any one suffices).")
    @click.option("--min-sequence", type=click.IntRange(min=0), default=None,
                  help="The sequence of the package the device has installed: refuse a lower one (rollback).")
    def inspect(package: Path, markdown: bool, trusted_keys: tuple[Path, ...], min_sequence: int | None) -> None:
        """Print a package's manifest as a table and verify its signature (with --trusted-key) and every file's
        sha256; a refusal exits with its code (docs/reliability.md)."""
        from toolkit.package import PackageError, check_files, read_manifest, unverified_note
        from toolkit.signature import check_sequence, load_trusted_keys, verify

        keys = load_trusted_keys(trusted_keys)
        root, m = read_manifest(package, keys)  # a bad signature stops here, before anything is shown
        if min_sequence is not None:
            check_sequence(m, min_sequence, str(root))
        _final_table(console, m, root)
        if markdown:
            click.echo(markdown_table(m))
        checks = check_files(root, m)
        t = Table(title=f"files (schema {m['schema_version']}, restnet {m['restnet_version']}, {m['created']})")
        for c in ("variant", "format", "path", "check"):
            t.add_column(c)
        for c in checks:
            t.add_row(c.variant, c.format, c.path, "[green]ok[/]" if c.ok else f"[red]{c.detail}[/]")
        console.print(t)
        bad = [c for c in checks if not c.ok]
        if bad:
            raise PackageError(f"{root}: {len(bad)} of {len(checks)} files failed verification (listed above); "
                               "the package is damaged: copy it again or repack")
        console.print(f"all {len(checks)} files verified (sha256 and size match the manifest)")
        if keys:
            k = verify(root, m, keys)
            console.print(f"signature verified: key {k.key_id} ({k.source}); sequence {m.get('sequence', 0)}",
                          markup=False, highlight=False, soft_wrap=True)
        else:
            log_console.print(unverified_note(root, m), style="yellow", markup=False, soft_wrap=True)

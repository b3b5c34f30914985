"""`restnet-pack` (also `restnet pack`) and `restnet inspect`."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import click
from click.core import ParameterSource
from rich.table import Table

from restnet.commands.handler import KEPT, HandledCommand, debug_option
from restnet.commands.method import _stack, experiment_options, make_runner, training_options
from restnet.export import names
from restnet.export.base import AGREEMENT_FLAG, percent
from restnet.package.request import CALIBRATION_POINTS


@dataclass(frozen=True)
class ProfileOption:
    """A `restnet-pack` option that, when given, replaces one profile field (a dotted path, ``budgets.band``)
    for this pack; the request is made from the profile with the given ones applied (``overridden``). Its
    click type is the field's (choices or range, so the option refuses what the YAML refuses) and its help
    the field's description, unless stated here. Used as a click decorator in the option list below."""

    name: str
    field: str
    help: str | None = None
    type: Any = None  # click's; default: from the field
    dest: str | None = None  # the parameter's name, when not the option's
    multiple: bool = False

    @property
    def param(self) -> str:
        return self.dest or self.name.lstrip("-").replace("-", "_")

    def __call__(self, f):
        from restnet.profiles import profile_field

        info = profile_field(self.field)
        text = self.help or f"{(info.description or '').rstrip('.')} [default: the profile's]."
        kwargs = {"multiple": True} if self.multiple else {"default": None}
        return click.option(self.name, self.param, type=self.type or _click_type(info), help=text, **kwargs)(f)


def _click_type(info) -> Any:
    """The click type that takes what a profile field takes: a Literal's choices, a number's range."""
    from restnet.profiles import field_type

    ann, meta = field_type(info)
    if get_origin(ann) is Literal:
        return click.Choice(get_args(ann))
    if ann not in (int, float):
        return ann
    b = {k: getattr(m, k) for m in meta for k in ("ge", "gt", "le", "lt") if hasattr(m, k)}
    if not b:
        return ann
    if ann is int:  # an integer bound is closed: x > 0 is x >= 1
        return click.IntRange(min=b.get("ge", b["gt"] + 1 if "gt" in b else None),
                              max=b.get("le", b["lt"] - 1 if "lt" in b else None))
    low, high = b.get("ge", b.get("gt")), b.get("le", b.get("lt"))
    return click.FloatRange(min=None if low is None else float(low), max=None if high is None else float(high),
                            min_open="gt" in b, max_open="lt" in b)


_PACK_OPTIONS = (  # in --help's order
    click.option("--profile", "profile_name", required=True, metavar="NAME|PATH",
                 help="Device profile: a name from `restnet profiles` or a path to a .yaml file."),
    click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
                 help="Package folder [default: artifacts/<profile>]."),
    click.option("--format", "extra_formats", multiple=True, metavar="FMT[,FMT]",
                 help=f"Extra formats besides the profile backend's: {', '.join(names())}."),
    click.option("--tflite-converter", type=click.Choice(["litert-torch", "onnx2tf"]), default="litert-torch",
                 show_default=True, help="Converter for tflite profiles (litert-torch: faster here; onnx2tf: via ONNX and "
                                         "TensorFlow). Both files take NHWC input and carry TFLite metadata."),
    ProfileOption("--metric", "budgets.metric",
                  help="Cost metric; flops counts MACs (fvcore multiply-adds) [default: the profile's]."),
    ProfileOption("--budget", "budgets.values", dest="budgets", type=float, multiple=True,
                  help="A budget in the metric's unit (params, MACs, ms); repeatable [default: the profile's]."),
    ProfileOption("--budgets-between", "budgets.between",
                  help="This many budgets evenly spaced between the anchors' costs [default: the profile's]."),
    ProfileOption("--ladder", "budgets.ladder",
                  help="This many budgets from the small anchor up to the device's binding limit (latency target, "
                       "compute, RAM share, storage) [default: the profile's]."),
    ProfileOption("--window", "budgets.window",
                  help="Beyond the paper: each budget only takes points costing >= budget - WINDOW x the distance "
                       "to the next lower budget (0 = off) [default: the profile's]."),
    ProfileOption("--band", "budgets.band",
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
    click.option("--calibration-points", "calibration", type=click.IntRange(min=0), default=None,
                 help="With --probes: whole stitched programs, at points spread over the parameter range, shipped "
                      "beside the probes; the prediction's corrections (per-program call overhead, weights out of "
                      "cache) are fitted on them and the anchors. Each costs a whole export; under 2, only the call "
                      f"overhead is fitted, on the anchors [default: {CALIBRATION_POINTS}]."),
    ProfileOption("--bundle", "bundle",
                  help="files: one file per variant; shared: the device format's variants as the methods (.pte) or "
                       "signatures (.tflite) of one file that stores the anchors' weights once [default: the "
                       "profile's bundle, files]."),
    ProfileOption("--latency-table", "latency_table", type=click.Path(exists=True, dir_okay=False),
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
pack_options = _stack(*_PACK_OPTIONS)
PROFILE_OPTIONS = tuple(o for o in _PACK_OPTIONS if isinstance(o, ProfileOption))


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


def make_request(profile_name, out, extra_formats, overrides=None, threads=None, include_anchors=True,
                 train_overrides=None, tflite_converter="litert-torch", probes=False, int8=None, keep_dominated=False,
                 sign_keys=(), sequence=None, calibration=None):
    """Everything resolved and validated before any heavy work (the signing keys are read here too).
    ``overrides``: PROFILE_OPTIONS' values by parameter name, None or empty where not given."""
    from restnet.package.request import BACKEND_FORMAT, PackRequest
    from restnet.package.signing import load_signing_key
    from restnet.profiles import ProfileError, load_profile

    if calibration is not None and not probes:
        raise click.BadParameter("ships calibration programs with the probes: add --probes, or leave it out",
                                 param_hint="--calibration-points")
    prof = load_profile(profile_name)
    overrides = overrides or {}
    for v in overrides.get("budgets") or ():
        if v <= 0:
            raise click.BadParameter(f"budgets must be positive, got {v:g}", param_hint="--budget")
    prof = overridden(prof, overrides)
    backend_fmt = BACKEND_FORMAT[prof.backend]
    if backend_fmt == "tflite" and tflite_converter == "onnx2tf":
        backend_fmt = "tflite-onnx2tf"
    req = PackRequest(profile=prof, out=out or Path("artifacts") / prof.name,
                      formats=_formats(backend_fmt, extra_formats),
                      threads=threads or min(prof.threads, os.cpu_count() or 1), include_anchors=include_anchors,
                      keep_dominated=keep_dominated, train_overrides=train_overrides or {}, probes=probes,
                      calibration=CALIBRATION_POINTS if calibration is None else calibration,
                      int8=prof.dtype == "int8" if int8 is None else int8, sequence=sequence,
                      sign_keys=tuple(load_signing_key(k) for k in sign_keys))
    if req.latency_table is not None and not req.latency_table.is_file():
        raise ProfileError(f"profile {prof.name}: latency_table {req.latency_table} does not exist; fix the path "
                           "(relative to the working folder) or remove the field")
    req.check()
    return req


def overridden(prof, given: dict):
    """The profile with the PROFILE_OPTIONS that were given (by parameter name) on top, validated as a
    whole; a value the profile's rules refuse is a usage error naming the option."""
    from pydantic import ValidationError

    update = {o.field: given[o.param] for o in PROFILE_OPTIONS if given.get(o.param) not in (None, ())}
    update.update(_budget_fields(prof.budgets, update))
    try:
        return prof.with_overrides(update)
    except ValidationError as err:
        named = ", ".join(o.name for o in PROFILE_OPTIONS if given.get(o.param) not in (None, ()))
        fields = "; ".join(f"field '{'.'.join(map(str, e['loc']))}': {e['msg']}" for e in err.errors())
        raise click.UsageError(f"{named}: {fields}") from None


def _budget_fields(b, update: dict) -> dict:
    """How the budgets are made, its four fields at once, since a profile states exactly one way: --budget,
    else --budgets-between, else the profile's values if they are in the metric asked for (their unit),
    else --ladder, the profile's ladder, the profile's between, 3 between."""
    metric = update.get("budgets.metric", b.metric)
    values, between, ladder = update.get("budgets.values"), update.get("budgets.between"), None
    if values is None and between is None:
        if b.values is not None and metric == b.metric:
            values = b.values
        else:
            ladder = update.get("budgets.ladder", b.ladder)
            between = None if ladder else b.between or 3
    return {"budgets.metric": metric, "budgets.values": values, "budgets.between": None if values else between,
            "budgets.ladder": ladder}


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
    def pack(profile_name, out, extra_formats, tflite_converter, threads, include_anchors, keep_dominated, int8, probes,
             calibration, sign_keys, sequence, strategy, epochs, lr, batch_size, no_ls_init, **opts):
        """Build a per-device package: CKA, selection, stitch training, verified export, manifest.

        Every stage reuses what is cached, so a repeated pack takes seconds to a minute or two."""
        over = {k: v for k, v in {"lr": lr, "batch_size": batch_size}.items() if v is not None}
        over.update(strategy=strategy, epochs=epochs, ls_init=not no_ls_init)
        given = {o.param: opts.pop(o.param) for o in PROFILE_OPTIONS}
        req = make_request(profile_name, out, extra_formats, given, threads, include_anchors, over, tflite_converter,
                           probes, int8, keep_dominated, sign_keys, sequence, calibration)
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

"""`restnet adapt`: task anchors as files, for shipping or for `--front-weights` / `--back-weights`.

Adapting the anchors is the slowest stage of a pack; a team that packs for
many devices (or a repository that ships converged default anchors) adapts
once and passes the files. Each anchor is written as fp16 safetensors (half
the bytes; the pack re-evaluates what it loads) beside a JSON record of how it
was made: the sha256 to check it against, the validation curve and the exact
command that remakes it.
"""
from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import click
from rich.console import Console

from restnet.commands.method import experiment_options, make_runner


def weights_name(anchor: str, data: str, resolution: int) -> str:
    return f"{anchor}-{Path(data).name}-{resolution}px"


def write_anchor(anchor, runner, out: Path, command: str) -> tuple[Path, dict]:
    """``anchor`` (a TaskAnchor of ``runner``'s experiment) as ``out/<name>.safetensors`` (fp16) and
    ``out/<name>.json``; atomic. The record names the validation images' fingerprint: a pack loads the file
    as a shipped anchor only on those same images (restnet.anchors.shipped)."""
    import torch
    from safetensors.torch import save

    from restnet.atomic import atomic_write_bytes
    from toolkit.package import sha256_of

    data, resolution, task = runner.exp.data, runner.exp.resolution, runner.task
    out.mkdir(parents=True, exist_ok=True)
    stem = weights_name(anchor.model.name, data, resolution)
    path = out / f"{stem}.safetensors"
    state = {k: (v.half() if v.is_floating_point() else v).contiguous()
             for k, v in anchor.net.state_dict().items()}
    atomic_write_bytes(save(state), path)
    record = {"anchor": anchor.model.name, "data": data, "resolution": resolution, "file": path.name,
              "sha256": sha256_of(path), "size": path.stat().st_size, "dtype": "float16",
              "train_images": len(task.train), "val_images": len(task.val), "seed": runner.exp.seed,
              "val_fingerprint": task.val.fingerprint(),
              "val_accuracy": anchor.accuracy, "source": anchor.source, "seconds": round(anchor.seconds, 1),
              "stopped": anchor.stopped, "curve": anchor.curve, "command": command,
              "torch": torch.__version__}
    atomic_write_bytes(json.dumps(record, indent=2).encode(), out / f"{stem}.json")
    return path, record


def adapt_command(console: Console, log_console: Console) -> click.Command:
    @click.command()
    @experiment_options
    @click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
                  help="Folder for <anchor>-<data>-<res>px.safetensors and its .json record.")
    @click.option("--only", type=click.Choice(["front", "back"]), default=None,
                  help="Adapt one anchor only [default: both].")
    def adapt(out, only, **opts):
        """Adapt the anchors to the task (--adapt-epochs auto: until converged) and write them as files."""
        r = make_runner({**opts, "shipped_anchors": False}, log_console)  # it exists to make them
        command = "restnet " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["adapt"] else None
        for role in ("front", "back"):
            if only not in (None, role):
                continue
            a = r.front if role == "front" else r.back
            path, rec = write_anchor(a, r, out, command)
            console.print(f"{role} {a.model.name}: val {a.accuracy:.2%} ({a.stopped or 'fixed epochs'}) -> {path} "
                          f"({rec['size'] / 2**20:.1f} MiB, sha256 {rec['sha256'][:16]}...)")
        console.print(json.dumps({"out": str(out)}))

    return adapt

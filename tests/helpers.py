"""What several test modules share: the tiny experiment and a cache for module-scoped fixtures.

Imported as ``from helpers import ...`` (pytest puts tests/ on sys.path); conftest.py keeps only
fixtures and guards, which pytest loads by itself.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

# Real timm architectures with random weights on a slice of the real data: minutes become seconds, and
# every stage (adapt, CKA, select, train, export, verify) still runs for real. Every verb takes these.
TINY = ["--no-pretrained", "--adapt", "probe", "--adapt-epochs", "1", "--train-size", "128", "--val-size", "48", "--test-size", "48",
        "--cka-batch", "16", "--cka-repeats", "2", "--resolution", "32"]
# restnet-pack (and train/evaluate) with one stitch-training epoch instead of three.
TINY_PACK = [*TINY, "--epochs", "1"]


@contextlib.contextmanager
def restnet_cache(path: Path) -> Iterator[Path]:
    """RESTNET_CACHE set to ``path`` for a module-scoped fixture (monkeypatch is function-scoped)."""
    old = os.environ.get("RESTNET_CACHE")
    os.environ["RESTNET_CACHE"] = str(path)
    try:
        yield path
    finally:
        if old is None:
            os.environ.pop("RESTNET_CACHE")
        else:
            os.environ["RESTNET_CACHE"] = old


SEED_MANIFEST = Path(__file__).resolve().parent / "bad_inputs" / "seeds" / "manifest.json"


def run_cli(args: list, code: int = 0, *needles: str, env: dict | None = None) -> str:
    """`restnet ARGS` in-process: its exit code must be ``code`` (the message names the code's class), no
    traceback may show, and every needle must be in the output; returns the output."""
    from click.testing import CliRunner

    from restnet.cli import main
    from toolkit.errors import EXIT_CODES

    res = CliRunner().invoke(main, [str(a) for a in args], env=env, catch_exceptions=False)
    out = res.output
    assert res.exit_code == code, f"exit {res.exit_code} (wanted {code}: {EXIT_CODES[code]})\n{out}"
    assert "Traceback" not in out, out
    for n in needles:
        assert n in out, f"{n!r} not in:\n{out}"
    return out


def small_package(root: Path) -> dict:
    """A package with real files and a valid manifest, made in milliseconds: the seed manifest (a real tiny
    pack's, schema 1.2) with every file it lists written as a few random bytes whose sha256 and size it
    records. For what reads manifests and files (signing, verification), not for runtimes."""
    import hashlib
    import json

    m = json.loads(SEED_MANIFEST.read_text())
    root.mkdir(parents=True, exist_ok=True)
    for v in m["variants"]:
        for f in v["files"]:
            data = os.urandom(64)
            (root / f["path"]).parent.mkdir(parents=True, exist_ok=True)
            (root / f["path"]).write_bytes(data)
            f["size"], f["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    (root / m["task"]["labels_file"]).write_text("\n".join(m["task"]["classes"]) + "\n")
    (root / "manifest.json").write_text(json.dumps(m, indent=2) + "\n")
    return m

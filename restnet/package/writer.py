"""Writing a package: the files beside the variants, and atomically (build in a sibling, then swap in).

A pack that fails half-way leaves the previous package exactly as it was;
the only non-atomic moment is between two renames (old aside, new in), and
a crash there leaves the old package under ``.<name>.old-*`` rather than
losing it.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from restnet.package import firmware, report
from restnet.package import manifest as mf


@contextlib.contextmanager
def staged_dir(out: Path) -> Iterator[Path]:
    """Yield an empty folder beside ``out``; on success it replaces ``out``, on error it is removed."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    tmp.chmod(0o755)  # mkdtemp makes it private; a package is meant to be shared
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
        os.rmdir(old)
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_package_files(root: Path, cka: dict, manifest: dict) -> None:
    """Everything beside the variant files: labels, schema, firmware README, report, and the manifest last."""
    (root / "labels.txt").write_text("\n".join(manifest["task"]["classes"]) + "\n")
    (root / "manifest.schema.json").write_text(mf.schema_text())
    (root / "README.md").write_text(firmware.readme(manifest))
    report.write(root, cka, manifest)
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")

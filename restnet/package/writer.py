"""Writing a package: the files beside the variants, and atomically (build in a sibling, then swap in).

A pack that fails or is killed half-way leaves the previous package exactly as it was: the new one
is built in ``.<name>.tmp-*``, flushed to disk, then exchanged with the old one in one atomic
rename (Linux renameat2). Where that is unsupported, two renames are used (old aside, new in); a
crash between them leaves the old package under ``.<name>.old-*``, and the next pack to the same
folder puts it back before it starts. One pack at a time per folder (``exclusive``).
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from restnet.package import firmware, report
from restnet.package import manifest as mf
from toolkit.errors import OUTPUT_ERRNOS, Busy, OutputUnwritable


STAGING = ".{name}.tmp-"  # a pack's staging folder beside the package
OLD = ".{name}.old-"  # the previous package, only between two renames where an atomic exchange is unsupported


@contextlib.contextmanager
def staged_dir(out: Path) -> Iterator[Path]:
    """Yield an empty folder beside ``out``; on success it replaces ``out``, on error it is removed."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=STAGING.format(name=out.name)))
    tmp.chmod(0o755)  # mkdtemp makes it private; a package is meant to be shared
    try:
        yield tmp
        _fsync_tree(tmp)  # the new files are on disk before they become the package
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, OSError) and err.errno in OUTPUT_ERRNOS:  # full disk, quota, read-only: say where
            raise OutputUnwritable(f"--out {out}: cannot write the new package beside it in {out.parent} "
                                   f"({err.strerror}{f': {err.filename}' if err.filename else ''}); the previous "
                                   f"package is unchanged. Free space there or pass another --out") from None
        raise
    if out.exists() and _exchange(tmp, out):  # one atomic step: ``out`` is always a whole package
        shutil.rmtree(tmp, ignore_errors=True)
        return
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(dir=out.parent, prefix=OLD.format(name=out.name)))
        os.rmdir(old)
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where that is unsupported."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _fsync_tree(root: Path) -> None:
    for p in sorted(root.rglob("*")):
        if p.is_file():
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def prepare_out(out: Path) -> None:
    """Refuse an ``--out`` that cannot become a package before any work, and tidy what a killed pack left.

    ``out`` must be new, empty or an earlier package (never someone's folder, which the swap would
    replace), and its parent must take new files. Call it while holding ``exclusive(out)``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputUnwritable(f"--out {out}: is a file, not a folder; pass a new or empty folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "manifest.json").is_file():
        raise OutputUnwritable(f"--out {out}: exists, is not empty and is not a restnet package (no manifest.json); "
                               "the pack would replace it. Pass a new or empty folder, or an earlier package")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise OutputUnwritable(f"--out {out}: cannot create files in {out.parent} ({err.strerror}); "
                               "pass a folder you can write to") from None
    olds = sorted(out.parent.glob(OLD.format(name=out.name) + "*"), key=lambda p: p.stat().st_mtime)
    if olds and not out.exists():  # killed between the two renames: the previous package comes back
        os.replace(olds.pop(), out)
    for stale in [*olds, *out.parent.glob(STAGING.format(name=out.name) + "*")]:
        shutil.rmtree(stale, ignore_errors=True)


@contextlib.contextmanager
def exclusive(out: Path) -> Iterator[None]:
    """Hold ``.<name>.lock`` beside ``out`` for a whole pack: a second pack to the same folder stops at
    once with a clear message instead of racing the first one's swap. The kernel drops the lock when
    the process dies, however it dies, so a killed pack never leaves a stale lock behind."""
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(out.parent / f".{out.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise OutputUnwritable(f"--out {out}: cannot create files in {out.parent} ({err.strerror}); "
                               "pass a folder you can write to") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            raise Busy(f"--out {out}: another restnet-pack (pid {holder}) is writing this package; wait for it "
                       "to finish (its result will be there) or pass another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


def write_package_files(root: Path, cka: dict, manifest: dict) -> None:
    """Everything beside the variant files: labels, schema, firmware README, report, and the manifest last."""
    (root / "labels.txt").write_text("\n".join(manifest["task"]["classes"]) + "\n")
    (root / "manifest.schema.json").write_text(mf.schema_text())
    (root / "README.md").write_text(firmware.readme(manifest))
    report.write(root, cka, manifest)
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2, allow_nan=False) + "\n")

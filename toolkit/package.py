"""Open and verify a restnet package without torch.

Nothing in a package is trusted before it is checked: the manifest must match
the schema this toolkit was built for (``manifest.schema.json`` beside this
file, generated from restnet's manifest model), every file name must stay
inside the package (no absolute paths, no ``..``, no symlink escapes), and
every file's sha256 must match before a runtime sees it.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from toolkit.errors import PackageInvalid

SCHEMA_FILE = Path(__file__).with_name("manifest.schema.json")
SUPPORTED_MAJOR = 1


class PackageError(PackageInvalid, ValueError):
    """A package that must not be loaded; the message says which file and why."""


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def safe_path(root: Path, name: str) -> Path:
    """``root/name`` if ``name`` is a plain relative path that stays inside ``root``."""
    if not isinstance(name, str) or not name or "\\" in name or "\x00" in name:
        raise PackageError(f"file name {name!r} in the manifest is not a plain relative path")
    p = PurePosixPath(name)
    if p.is_absolute() or name.startswith("~") or any(part in ("..", "") for part in name.split("/")):
        raise PackageError(f"file name {name!r} in the manifest points outside the package (absolute or '..')")
    root = root.resolve()
    full = (root / p).resolve()
    if full != root and root not in full.parents:
        raise PackageError(f"file name {name!r} in the manifest resolves outside the package ({full})")
    return full


def _schema() -> dict:
    return json.loads(SCHEMA_FILE.read_text())


def validate_manifest(manifest: Any, where: str = "manifest.json") -> None:
    """Schema check with the first error's location, plus the version gate."""
    import jsonschema

    if not isinstance(manifest, dict):
        raise PackageError(f"{where}: expected a JSON object")
    version = str(manifest.get("schema_version", ""))
    major = version.split(".")[0]
    if not major.isdigit() or int(major) != SUPPORTED_MAJOR:
        raise PackageError(f"{where}: schema_version {version!r} is not supported by this toolkit "
                           f"(reads {SUPPORTED_MAJOR}.x)")
    validator = jsonschema.Draft202012Validator(_schema())
    errors = sorted(validator.iter_errors(manifest), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        loc = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise PackageError(f"{where}: field '{loc}': {e.message}{more}")


@dataclass(frozen=True)
class FileCheck:
    variant: str
    format: str
    path: str
    ok: bool
    detail: str


def check_files(root: Path, manifest: dict) -> list[FileCheck]:
    """Every file of every variant: inside the package, present, right size, right sha256."""
    out = []
    probes = {"id": "(probes)", "files": manifest.get("probes") or []}
    for v in [*manifest["variants"], probes]:
        for f in v["files"]:
            try:
                full = safe_path(root, f["path"])
            except PackageError as err:
                out.append(FileCheck(v["id"], f["format"], f["path"], False, str(err)))
                continue
            if not full.is_file():
                out.append(FileCheck(v["id"], f["format"], f["path"], False, "missing"))
            elif full.stat().st_size != f["size"]:
                out.append(FileCheck(v["id"], f["format"], f["path"], False,
                                     f"size {full.stat().st_size} != manifest {f['size']}"))
            elif (digest := sha256_of(full)) != f["sha256"]:
                out.append(FileCheck(v["id"], f["format"], f["path"], False,
                                     f"sha256 {digest[:12]}… != manifest {f['sha256'][:12]}…"))
            else:
                out.append(FileCheck(v["id"], f["format"], f["path"], True, "sha256 ok"))
    return out


def read_manifest(root: str | Path) -> tuple[Path, dict]:
    """(package root, validated manifest); refuses anything malformed."""
    root = Path(root)
    path = root / "manifest.json"
    if not path.is_file():
        raise PackageError(f"{root}: not a restnet package (no manifest.json)")
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, RecursionError) as err:  # bad JSON, bad UTF-8, nesting past the parser's limit
        raise PackageError(f"{path}: not valid JSON: {err}") from None
    validate_manifest(manifest, str(path))
    ids = [v["id"] for v in manifest["variants"]]
    if len(set(ids)) != len(ids):
        raise PackageError(f"{path}: variant ids are not unique")
    return root, manifest


def open_verified(root: str | Path) -> tuple[Path, dict]:
    """``read_manifest`` plus every file check; the first failure is raised."""
    root, manifest = read_manifest(root)
    bad = [c for c in check_files(root, manifest) if not c.ok]
    if bad:
        c = bad[0]
        raise PackageError(f"{root}: refusing to load: {c.path} (variant {c.variant}, {c.format}): {c.detail}")
    return root, manifest

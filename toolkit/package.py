"""Open and verify a restnet package without torch.

Nothing in a package is trusted before it is checked: the manifest must match
the schema this toolkit was built for (``manifest.schema.json`` beside this
file, generated from restnet's manifest model), every file name must stay
inside the package (no absolute paths, no ``..``, no symlink escapes), and
every file's sha256 must match before a runtime sees it. Given trusted keys, the manifest's signature
(``manifest.sig``, toolkit.signature) is checked before anything else in it is read, since a forged
manifest would vouch for forged files; without them an unsigned package still opens, with a warning.

Versions (docs/package-format.md, "Versioning"): a manifest of another major is
refused; an older or equal minor is validated strictly (an unknown field is a
mistake); a newer minor is validated with unknown fields allowed, because a
minor only adds optional fields an older reader may ignore, while every field
this toolkit knows is still checked.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from toolkit import signature
from toolkit.errors import PackageError

SCHEMA_FILE = Path(__file__).with_name("manifest.schema.json")
VERSION_KEY = "x-schema-version"  # the schema's own MAJOR.MINOR (restnet.package.manifest.json_schema)
log = logging.getLogger("toolkit")  # unconfigured, Python prints its warnings to stderr as one line


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


def parse_version(text: Any) -> tuple[int, int] | None:
    """``"1.3"`` -> (1, 3); None for anything that is not MAJOR.MINOR."""
    m = re.fullmatch(r"(\d+)\.(\d+)", text) if isinstance(text, str) else None
    return (int(m[1]), int(m[2])) if m else None


def reader_version() -> tuple[int, int]:
    """The MAJOR.MINOR this toolkit's schema copy was generated for."""
    return parse_version(_schema()[VERSION_KEY])


def open_to_unknown_fields(schema: Any) -> Any:
    """The schema with every ``additionalProperties: false`` dropped: how a newer minor is read (its added
    fields are ignored, every known field is still checked). Maps (``additionalProperties: {schema}``) keep
    their value schema."""
    if isinstance(schema, dict):
        return {k: open_to_unknown_fields(v) for k, v in schema.items()
                if not (k == "additionalProperties" and v is False)}
    if isinstance(schema, list):
        return [open_to_unknown_fields(v) for v in schema]
    return schema


def _schema_for(version: Any, where: str) -> dict:
    """The schema to validate a manifest of ``version`` with, or a refusal that says what to do."""
    got, (major, minor) = parse_version(version), reader_version()
    if got is None:
        raise PackageError(f"{where}: field 'schema_version': {version!r} is not MAJOR.MINOR (e.g. '{major}.{minor}')")
    if got[0] != major:
        what = (f"a newer major may rename fields or change their meaning; read it with a toolkit for {got[0]}.x"
                if got[0] > major else "re-pack it with a current restnet")
        raise PackageError(f"{where}: schema_version {version!r} is not supported by this toolkit (it reads "
                           f"{major}.0 to {major}.{minor}, and newer {major}.x minors without their new fields): "
                           f"{what}")
    return _schema() if got[1] <= minor else open_to_unknown_fields(_schema())


def validate_manifest(manifest: Any, where: str = "manifest.json") -> None:
    """Schema check with the first error's location, plus the version gate (see the module's docstring)."""
    import jsonschema

    if not isinstance(manifest, dict):
        raise PackageError(f"{where}: expected a JSON object")
    validator = jsonschema.Draft202012Validator(_schema_for(manifest.get("schema_version"), where))
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
    """Every file of every variant (and every shared file and probe): inside the package, present, right size,
    right sha256. A file several variants share is hashed once."""
    out, seen = [], {}
    probes = {"id": "(probes)", "files": manifest.get("probes") or []}
    shared = {"id": "(shared)", "files": manifest.get("bundles") or []}
    for v in [*manifest["variants"], shared, probes]:
        for f in v["files"]:
            key = (f["path"], f["size"], f["sha256"])
            if key not in seen:
                seen[key] = _check_one(root, f)
            ok, detail = seen[key]
            out.append(FileCheck(v["id"], f["format"], f["path"], ok, detail))
    return out


def _check_one(root: Path, f: dict) -> tuple[bool, str]:
    try:
        full = safe_path(root, f["path"])
    except PackageError as err:
        return False, str(err)
    if not full.is_file():
        return False, "missing"
    if full.stat().st_size != f["size"]:
        return False, f"size {full.stat().st_size} != manifest {f['size']}"
    if (digest := sha256_of(full)) != f["sha256"]:
        return False, f"sha256 {digest[:12]}… != manifest {f['sha256'][:12]}…"
    return True, "sha256 ok"


def _no_constant(name: str) -> float:
    """Python's json reads NaN and Infinity, which JSON does not have: a firmware parser would fail on them."""
    raise ValueError(f"{name} is not a JSON number (a manifest holds finite numbers only)")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    """One key twice in an object: parsers disagree on which value wins, so the signed manifest and what
    a firmware parser reads could differ."""
    out = dict(pairs)
    if len(out) != len(pairs):
        twice = next(k for i, (k, _) in enumerate(pairs) if k in dict(pairs[:i]))
        raise ValueError(f"key {twice!r} appears twice in one object")
    return out


def read_manifest(root: str | Path, trusted_keys=None) -> tuple[Path, dict]:
    """(package root, validated manifest); refuses anything malformed. With ``trusted_keys`` (paths or PEM
    bytes of public keys, or ``signature.TrustedKey``) the signature is verified first."""
    root = Path(root)
    path = root / "manifest.json"
    if not path.is_file():
        raise PackageError(f"{root}: not a restnet package (no manifest.json)")
    try:
        manifest = json.loads(path.read_text(), parse_constant=_no_constant, object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError) as err:  # bad JSON, bad UTF-8, nesting past the parser's limit
        raise PackageError(f"{path}: not valid JSON: {err}") from None
    if trusted_keys:
        signature.verify(root, manifest, signature.load_trusted_keys(trusted_keys))
    validate_manifest(manifest, str(path))
    ids = [v["id"] for v in manifest["variants"]]
    if len(set(ids)) != len(ids):
        raise PackageError(f"{path}: variant ids are not unique")
    return root, manifest


def open_verified(root: str | Path, trusted_keys=None, min_sequence: int | None = None) -> tuple[Path, dict]:
    """``read_manifest`` plus every file check; the first failure is raised. ``trusted_keys``: accept only a
    package signed by one of them; ``min_sequence``: the installed package's sequence, refuse a lower one."""
    keys = signature.load_trusted_keys(trusted_keys)
    root, manifest = read_manifest(root, keys)
    if not keys:
        log.warning(unverified_note(root, manifest))
    if min_sequence is not None:
        signature.check_sequence(manifest, min_sequence, str(root))
    bad = [c for c in check_files(root, manifest) if not c.ok]
    if bad:
        c = bad[0]
        raise PackageError(f"{root}: refusing to load: {c.path} (variant {c.variant}, {c.format}): {c.detail}")
    return root, manifest


def unverified_note(root: Path, manifest: dict) -> str:
    """The one-line warning for a package opened without a trusted key."""
    signed = (root / signature.SIG_NAME).is_file()
    what = (f"signed by key {', '.join(manifest.get('key_ids') or ['?'])}, signature not checked" if signed
            else f"unsigned (no {signature.SIG_NAME})")
    return (f"warning: {root}: {what}: opened because no trusted key is configured; pass trusted keys "
            "(--trusted-key) to accept only packages signed by them")

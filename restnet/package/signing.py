"""Signing packages on the workstation: keys, the manifest's sequence and key ids, ``manifest.sig``.

What is signed, the signature file's format and how a device checks it are in toolkit.signature (both
sides read one definition). Private keys are PEM PKCS#8 files that only their owner may read (the same
rule as ssh), so that one made with ``openssl genpkey -algorithm ed25519`` works too.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from restnet.package import manifest as mf
from restnet.package.writer import exclusive, prepare_out, staged_dir
from toolkit.canonical import canonical_bytes
from toolkit.errors import OutputUnwritable, PackageError, UsageError
from toolkit.package import check_files, parse_version, read_manifest, validate_manifest
from toolkit.signature import ALGORITHM, SIG_FORMAT, SIG_NAME, SIG_VERSION, SIGNED, key_id, manifest_digest, \
    read_signatures


@dataclass(frozen=True)
class SigningKey:
    key_id: str
    key: Ed25519PrivateKey
    source: str


def keygen(folder: Path, name: str) -> tuple[Path, Path, str]:
    """A new key pair: ``folder/name.key`` (mode 0600) and ``folder/name.pub``; never replaces a file.
    Returns (private key path, public key path, key id)."""
    folder = Path(folder)
    private, public = folder / f"{name}.key", folder / f"{name}.pub"
    for p in (private, public):
        if p.exists() or p.is_symlink():
            raise OutputUnwritable(f"{p} exists: keygen never replaces a key (packages signed by it would no "
                                   "longer verify on devices that trust it); pass another folder or --name")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write_new(private, pem, 0o600)
        _write_new(public, pub, 0o644)
    except FileExistsError as err:  # created by someone else since the check above
        raise OutputUnwritable(f"{err.filename} exists: keygen never replaces a key; pass another folder or "
                               "--name") from None
    except OSError as err:
        raise OutputUnwritable(f"{folder}: cannot write the key pair ({err.strerror}); pass a folder you can "
                               "write to") from None
    return private, public, key_id(key.public_key().public_bytes_raw())


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Write ``path`` whole or not at all, with ``mode`` from the start, failing if it exists: a temporary
    file, flushed, then hard-linked into place (link never replaces a file)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)
    finally:
        os.unlink(tmp)


def load_signing_key(path: Path) -> SigningKey:
    """A private key file for signing, refused (exit 2) when others may read it or it is not Ed25519."""
    path = Path(path)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        data = path.read_bytes()
    except OSError as err:
        raise UsageError(f"{path}: cannot read the signing key ({err.strerror})") from None
    if mode & 0o077:
        raise UsageError(f"{path}: signing key is open to other users (mode {mode:04o}); a private key must be "
                         f"readable by its owner only: chmod 600 {path}")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise UsageError(f"{path}: the key is encrypted with a passphrase; restnet signs with unencrypted "
                         "keys (mode 0600, or a secret mounted for the pack): decrypt it with "
                         "`openssl pkey -in KEY -out PLAIN`") from None
    except ValueError as err:
        hint = ("it is a public key: pass the .key beside it" if b"PUBLIC KEY" in data
                else "pass the .key file that restnet keygen wrote")
        raise UsageError(f"{path}: not a PEM private key ({str(err).splitlines()[0]}); {hint}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError(f"{path}: not an Ed25519 key ({type(key).__name__.lstrip('_')}); make one with "
                         "`restnet keygen DIR`")
    return SigningKey(key_id(key.public_key().public_bytes_raw()), key, str(path))


def stamp(manifest: dict, sequence: int, keys: list[SigningKey]) -> dict:
    """The manifest with its ``sequence`` and the signing keys' ids (manifest 1.6), validated."""
    out = {k: v for k, v in manifest.items() if k not in ("sequence", "key_ids")}
    out["sequence"] = sequence
    if keys:
        out["key_ids"] = list(dict.fromkeys(k.key_id for k in keys))
    validate_manifest(out)  # as a device's toolkit will read it (a newer minor's own fields included)
    return out


def signature_doc(manifest: dict, keys: list[SigningKey]) -> dict:
    """``manifest.sig``'s content: each key's Ed25519 signature over the canonical manifest."""
    data = canonical_bytes(manifest)
    sigs = [{"key_id": k.key_id, "algorithm": ALGORITHM, "signature": base64.b64encode(k.key.sign(data)).decode()}
            for k in dict((k.key_id, k) for k in keys).values()]
    return {"format": SIG_FORMAT, "version": SIG_VERSION, "signed": SIGNED,
            "manifest_sha256": manifest_digest(manifest), "signatures": sigs}


def write_signature(root: Path, manifest: dict, keys: list[SigningKey]) -> None:
    (root / SIG_NAME).write_text(json.dumps(signature_doc(manifest, keys), indent=2) + "\n")


def previous_sequence(out: Path) -> int | None:
    """The sequence of the package already in ``out`` (0 for one from before manifest 1.6), None if none."""
    path = Path(out) / "manifest.json"
    if not path.is_file():
        return None
    try:
        seq = json.loads(path.read_text()).get("sequence", 0)
    except (OSError, ValueError, AttributeError) as err:
        raise PackageError(f"{path}: cannot read the previous package's sequence ({err}); pass --sequence N "
                           "(higher than any package devices may have installed)") from None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0 else 0


def next_sequence(out: Path, given: int | None) -> int:
    """The new package's sequence: ``given``, or one more than the package it replaces in ``out`` (1 for a
    new folder). A given one must be higher than the replaced package's: sequences only grow."""
    try:
        prev = previous_sequence(out)
    except PackageError:
        if given is None:
            raise
        prev = None
    if given is None:
        return (prev or 0) + 1
    if prev is not None and given <= prev:
        raise UsageError(f"--sequence {given}: the package in {out} has sequence {prev}, and a device that "
                         f"installed it would refuse this one as a rollback; pass --sequence {prev + 1} or more, "
                         "or leave it out")
    return given


def sign_package(package: Path, keys: list[SigningKey], sequence: int | None) -> tuple[dict, list[str]]:
    """Sign the package in ``package`` (``restnet sign``): its manifest gets ``sequence`` (else keeps the one
    it has) and the ids of exactly these keys, which sign it into a new ``manifest.sig``; both are swapped
    in with the package in one atomic step, like a pack's. Returns (manifest, ids of the keys whose earlier
    signatures are gone). A package whose files fail their sha256 is refused: a signature would vouch for
    them."""
    package = Path(package)
    with exclusive(package):
        root, old = read_manifest(package)
        prepare_out(package)  # tidies what a killed pack or sign left beside it
        bad = [c for c in check_files(root, old) if not c.ok]
        if bad:
            raise PackageError(f"{root}: refusing to sign a damaged package: {bad[0].path} {bad[0].detail} "
                               f"({len(bad)} file(s) fail); repack it")
        have = old.get("sequence")
        if sequence is not None and have is not None and sequence < have:
            raise UsageError(f"--sequence {sequence}: the package already has sequence {have}, and sequences only "
                             f"grow; pass {have} or more, or leave it out")
        new = _upgraded(old)
        new = stamp(new, sequence or have or 1, keys)
        dropped = _dropped(root, keys)
        with staged_dir(package) as tmp:
            _link_tree(root, tmp)
            for name in ("manifest.json", SIG_NAME):
                (tmp / name).unlink(missing_ok=True)
            if new["schema_version"] != old["schema_version"]:  # the schema that validates it strictly
                (tmp / "manifest.schema.json").unlink(missing_ok=True)
                (tmp / "manifest.schema.json").write_text(mf.schema_text())
            (tmp / "manifest.json").write_text(json.dumps(new, indent=2, allow_nan=False) + "\n")
            write_signature(tmp, new, keys)
    return new, dropped


def _upgraded(manifest: dict) -> dict:
    """An older minor's manifest raised to this restnet's (it then may hold the 1.6 fields); a newer
    minor keeps its version, its fields are signed as they are."""
    if parse_version(manifest["schema_version"]) < parse_version(mf.SCHEMA_VERSION):
        return {**manifest, "schema_version": mf.SCHEMA_VERSION}
    return manifest


def _dropped(root: Path, keys: list[SigningKey]) -> list[str]:
    """The keys that signed the package before and are not among ``keys``."""
    try:
        before = read_signatures(root)["signatures"] if (root / SIG_NAME).is_file() else []
    except PackageError:
        return []  # unreadable: nothing to report
    ids = {k.key_id for k in keys}
    return list(dict.fromkeys(s["key_id"] for s in before if s["key_id"] not in ids))


def _link_tree(src: Path, dst: Path) -> None:
    """Every file of ``src`` in ``dst`` as a hard link (no copy of the variants; nothing is written through
    them: the files that change are replaced, not rewritten)."""
    for p in sorted(src.rglob("*")):
        target = dst / p.relative_to(src)
        if p.is_symlink():
            target.symlink_to(os.readlink(p))
        elif p.is_dir():
            target.mkdir(exist_ok=True)
        else:
            try:
                os.link(p, target)
            except OSError:  # a file system without hard links
                shutil.copy2(p, target)

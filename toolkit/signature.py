"""Checking a package's signature and sequence on the device: what stops a forged or an older package.

The sha256 list in ``manifest.json`` catches a damaged file, not a changed one: whoever can write the
update channel can also rewrite the sha256. So the manifest (and with it every file's sha256 and size)
is signed: ``manifest.sig`` beside it holds Ed25519 signatures over the manifest's canonical bytes
(``toolkit.canonical``, RFC 8785), one per signing key, so that a package signed by an old and a new key
opens on devices that trust either (key rotation). A device accepts a package when one key it trusts has
a valid signature in the file, and refuses one whose ``sequence`` is lower than the package it has
installed (a rollback to an older, validly signed package).

Everything here reads untrusted bytes and raises ``PackageUntrusted`` (exit 10) or ``PackageRollback``
(exit 11) with one line that says what was refused and what to do. The workstation's signing side is
``restnet.package.signing``; the formats both sides share are defined here, once.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolkit.canonical import NotCanonical, canonical_bytes
from toolkit.errors import PackageRollback, PackageUntrusted, UsageError

SIG_NAME = "manifest.sig"
SIG_FORMAT = "restnet-manifest-signature"
SIG_VERSION = 1
ALGORITHM = "ed25519"
SIGNED = "manifest.json in RFC 8785 canonical form (UTF-8)"  # written into the file for a human reader
MAX_SIG_BYTES = 1 << 16  # a real one is a few hundred bytes per key
KEY_ID = re.compile(r"[0-9a-f]{16}")


@dataclass(frozen=True)
class TrustedKey:
    """A public key a device trusts; ``source`` names it in messages (its file)."""

    key_id: str
    raw: bytes  # the 32-byte Ed25519 public key
    source: str


def key_id(raw_public: bytes) -> str:
    """The first 16 hex digits of the sha256 of the raw 32-byte public key: a name to find the key by, not a
    secret and not what is trusted (the signature is checked against the trusted key's own bytes)."""
    return hashlib.sha256(raw_public).hexdigest()[:16]


def manifest_digest(manifest: Any) -> str:
    """sha256 of the manifest's canonical bytes: written beside the signatures, so that a refusal can say
    whether the manifest or the signature changed."""
    return hashlib.sha256(canonical_bytes(manifest)).hexdigest()


def load_trusted_key(source: str | Path | bytes) -> TrustedKey:
    """A PEM public key (``restnet keygen``'s ``.pub``, or ``openssl pkey -pubout``): a path or the PEM bytes."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    if isinstance(source, bytes):
        name, data = "trusted key", source
    else:
        name = str(source)
        try:
            data = Path(source).read_bytes()
        except OSError as err:
            raise UsageError(f"{name}: cannot read the trusted key ({err.strerror}); pass the .pub file that "
                             "restnet keygen wrote") from None
    hint = ("it is a private key: pass the .pub beside it, and keep the private key off the device"
            if b"PRIVATE KEY" in data else "pass the .pub file that restnet keygen wrote")
    try:
        key = load_pem_public_key(data)
    except (ValueError, TypeError) as err:
        raise UsageError(f"{name}: not a PEM public key ({str(err).splitlines()[0]}); {hint}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError(f"{name}: not an Ed25519 key ({type(key).__name__.lstrip('_')}); {hint}")
    raw = key.public_bytes_raw()
    return TrustedKey(key_id(raw), raw, name)


def load_trusted_keys(sources) -> list[TrustedKey]:
    return [k if isinstance(k, TrustedKey) else load_trusted_key(k) for k in sources or ()]


def read_signatures(root: Path) -> dict:
    """``manifest.sig`` parsed and checked for shape; its signatures are not verified here."""
    path = root / SIG_NAME
    if not path.is_file():
        raise PackageUntrusted(f"{root}: no {SIG_NAME}: the package is unsigned and this device accepts only "
                               "packages signed by a trusted key; sign it with `restnet sign` (or pack with "
                               "--sign-key) and copy it again")
    with open(path, "rb") as f:
        data = f.read(MAX_SIG_BYTES + 1)
    try:
        if len(data) > MAX_SIG_BYTES:
            raise ValueError(f"over {MAX_SIG_BYTES} bytes")
        doc = json.loads(data, parse_constant=_no_constant)
        _check_shape(doc)
    except (ValueError, RecursionError) as err:  # bad JSON or UTF-8, wrong fields or types
        raise PackageUntrusted(f"{path}: not a readable restnet signature file ({str(err)[:200]}); the package "
                               "cannot be trusted: sign it again and copy it again") from None
    return doc


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _check_shape(doc: Any) -> None:
    if not isinstance(doc, dict) or doc.get("format") != SIG_FORMAT:
        raise ValueError(f"'format' is not {SIG_FORMAT!r}")
    if doc.get("version") != SIG_VERSION:
        raise ValueError(f"'version' {doc.get('version')!r} is not {SIG_VERSION}: made by another restnet")
    sigs = doc.get("signatures")
    if not isinstance(sigs, list) or not sigs:
        raise ValueError("'signatures' is not a non-empty list")
    for s in sigs:
        if not (isinstance(s, dict) and isinstance(s.get("key_id"), str) and KEY_ID.fullmatch(s["key_id"])
                and isinstance(s.get("signature"), str) and s.get("algorithm") == ALGORITHM):
            raise ValueError(f"a signature entry is not {{key_id: 16 hex digits, algorithm: {ALGORITHM}, "
                             "signature: base64}")
    if not isinstance(doc.get("manifest_sha256", ""), str):
        raise ValueError("'manifest_sha256' is not text")


def _decode(signature: str) -> bytes | None:
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == 64 else None


def verify(root: Path, manifest: Any, trusted: list[TrustedKey]) -> TrustedKey:
    """The trusted key whose signature in ``manifest.sig`` covers this manifest; refuses otherwise."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    doc = read_signatures(root)
    by_id = {k.key_id: k for k in trusted}
    mine = [s for s in doc["signatures"] if s["key_id"] in by_id]
    if not mine:
        signers = ", ".join(sorted({s["key_id"] for s in doc["signatures"]}))
        raise PackageUntrusted(f"{root}: signed by key {signers}, which this device does not trust (it trusts "
                               f"{', '.join(by_id)}): a package from someone else, or one key has been rotated "
                               "without the other; refusing every file")
    try:
        data = canonical_bytes(manifest)
    except NotCanonical as err:
        raise PackageUntrusted(f"{root / 'manifest.json'}: cannot be checked against its signature ({err}); "
                               "refusing every file") from None
    for s in mine:
        raw = _decode(s["signature"])
        try:
            if raw is not None:
                Ed25519PublicKey.from_public_bytes(by_id[s["key_id"]].raw).verify(raw, data)
                return by_id[s["key_id"]]
        except InvalidSignature:
            pass
    ids = ", ".join(s["key_id"] for s in mine)
    if doc.get("manifest_sha256") and doc["manifest_sha256"] != hashlib.sha256(data).hexdigest():
        raise PackageUntrusted(f"{root / 'manifest.json'}: changed after it was signed by key {ids} (a file's "
                               "sha256 or size, or any other field): refusing every file; copy the package "
                               "again from its source")
    raise PackageUntrusted(f"{root / SIG_NAME}: the signature of key {ids} does not match manifest.json: the "
                           "signature was altered or forged; refusing every file")


def check_sequence(manifest: dict, min_sequence: int, where: str) -> None:
    """Refuse a package older than the installed one (an equal sequence is the same release, accepted)."""
    seq = manifest.get("sequence")
    if not isinstance(seq, int) or isinstance(seq, bool):
        seq = 0  # packages before manifest 1.6 carry none: older than any sequenced one
    if seq < min_sequence:
        raise PackageRollback(f"{where}: sequence {seq} is lower than the installed package's {min_sequence}: "
                              "refusing a rollback to an older package; install a package with sequence >= "
                              f"{min_sequence}")

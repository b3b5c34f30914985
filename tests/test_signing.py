"""Signed packages: keys, signing, and every refusal on the device side (inspect, the toolkit, restnet-bench).

Most cases sign a small package made in milliseconds (helpers.small_package: real files, real sha256, a
real tiny pack's manifest); one slow test packs for real with --sign-key. The attacks are the ones an
over-the-air update channel allows: swap a file and rewrite its sha256 in the manifest, sign with another
key, drop the signature, push back an older package.
"""
from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from helpers import TINY_PACK, restnet_cache, small_package
from helpers import run_cli as cli

from restnet.package import manifest as mf
from restnet.package.signing import load_signing_key, next_sequence, sign_package
from toolkit.errors import PackageError, PackageRollback, PackageUntrusted, UsageError
from toolkit.package import open_verified, read_manifest
from toolkit.signature import SIG_NAME, verify

ROOT = Path(__file__).resolve().parents[1]
DEVICE_PY = ROOT / ".venv-device" / "bin" / "python"
UNTRUSTED, ROLLBACK, USAGE, PACKAGE, OUTPUT = 10, 11, 2, 6, 8


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """name -> (private, public): 'old' and 'new' (a rotation), 'other' (someone else's)."""
    d = tmp_path_factory.mktemp("keys")
    for name in ("old", "new", "other"):
        cli(["keygen", d, "--name", name])
    return {n: (d / f"{n}.key", d / f"{n}.pub") for n in ("old", "new", "other")}


def kid(public: Path) -> str:
    raw = serialization.load_pem_public_key(public.read_bytes()).public_bytes_raw()
    return hashlib.sha256(raw).hexdigest()[:16]


@pytest.fixture
def signed(tmp_path, keys) -> Path:
    """A package signed by the 'old' key, sequence 5."""
    pkg = tmp_path / "pkg"
    small_package(pkg)
    cli(["sign", pkg, "--key", keys["old"][0], "--sequence", "5"], 0, "sequence 5")
    return pkg


def manifest(pkg: Path) -> dict:
    return json.loads((pkg / "manifest.json").read_text())


def refused(pkg: Path, keys_: list[Path], code: int, needle: str, min_sequence: int | None = None) -> None:
    """Refused with the same message and exit code by restnet inspect and the toolkit's Package."""
    from toolkit.switcher import Package

    args = ["inspect", pkg, *sum((["--trusted-key", k] for k in keys_), [])]
    out = cli([*args, *(["--min-sequence", min_sequence] if min_sequence is not None else [])], code, needle)
    if code != PACKAGE:  # a signature or sequence refusal comes before anything of the package is shown
        assert "variants" not in out, out
    kind = {UNTRUSTED: PackageUntrusted, ROLLBACK: PackageRollback, PACKAGE: PackageError}[code]
    with pytest.raises(kind, match=re.escape(needle)) as err:
        Package(pkg, trusted_keys=keys_, min_sequence=min_sequence)
    assert err.value.exit_code == code


# ---- keys ----
def test_keygen_writes_a_private_key_only_its_owner_reads_and_never_replaces_one(tmp_path):
    out = cli(["keygen", tmp_path / "k"])
    private, public = tmp_path / "k" / "restnet.key", tmp_path / "k" / "restnet.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600 and stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o700
    assert f"key {kid(public)}" in out
    key = serialization.load_pem_private_key(private.read_bytes(), None)
    assert key.public_key().public_bytes_raw() == serialization.load_pem_public_key(public.read_bytes()).public_bytes_raw()
    before = private.read_bytes()
    cli(["keygen", tmp_path / "k"], OUTPUT, "restnet.key exists: keygen never replaces a key")
    public.unlink()  # the private key alone still blocks a new pair
    cli(["keygen", tmp_path / "k"], OUTPUT, "exists")
    assert private.read_bytes() == before and not public.exists()
    assert [p.name for p in (tmp_path / "k").iterdir()] == ["restnet.key"], "temporary files left behind"


def test_a_signing_key_others_can_read_is_refused(keys, tmp_path):
    key = tmp_path / "shared.key"
    shutil.copyfile(keys["old"][0], key)
    key.chmod(0o644)
    with pytest.raises(UsageError, match=r"shared.key: signing key is open to other users \(mode 0644\).*chmod 600"):
        load_signing_key(key)
    key.chmod(0o600)
    assert load_signing_key(key).key_id == kid(keys["old"][1])


def test_wrong_key_files_are_refused_with_what_to_pass(keys, tmp_path):
    pkg = tmp_path / "pkg"
    small_package(pkg)
    pub_as_private = tmp_path / "pub.key"
    shutil.copyfile(keys["old"][1], pub_as_private)
    pub_as_private.chmod(0o600)
    cli(["sign", pkg, "--key", pub_as_private], USAGE, "not a PEM private key", "it is a public key")
    rsa_key = tmp_path / "rsa.key"
    rsa_key.write_bytes(rsa.generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    rsa_key.chmod(0o600)
    cli(["sign", pkg, "--key", rsa_key], USAGE, "not an Ed25519 key (RSAPrivateKey)")
    locked = tmp_path / "locked.key"
    locked.write_bytes(ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret")))
    locked.chmod(0o600)
    cli(["sign", pkg, "--key", locked], USAGE, "encrypted with a passphrase")
    cli(["inspect", pkg, "--trusted-key", keys["old"][0]], USAGE, "it is a private key: pass the .pub beside it")
    assert not (pkg / SIG_NAME).exists()


# ---- signing and verifying ----
def test_a_signed_package_verifies_everywhere(signed, keys, caplog):
    from toolkit.switcher import Package

    m = manifest(signed)
    assert m["schema_version"] == mf.SCHEMA_VERSION and m["sequence"] == 5 and m["key_ids"] == [kid(keys["old"][1])]
    mf.Manifest.model_validate(m)  # a 1.2 package signed is a valid current one
    assert json.loads((signed / "manifest.schema.json").read_text())["x-schema-version"] == mf.SCHEMA_VERSION
    cli(["inspect", signed, "--trusted-key", keys["old"][1], "--min-sequence", "5"], 0, "files verified",
        f"signature verified: key {kid(keys['old'][1])}")
    with caplog.at_level(logging.WARNING, "toolkit"):
        pkg = Package(signed, trusted_keys=[keys["old"][1]], min_sequence=4)
    assert pkg.labels == m["task"]["classes"] and not caplog.records
    assert verify(signed, m, [load_key(keys["old"][1])]).key_id == kid(keys["old"][1])


def load_key(public: Path):
    from toolkit.signature import load_trusted_key

    return load_trusted_key(public.read_bytes())


def test_attack_a_swapped_file_with_its_sha256_rewritten(signed, keys):
    m = manifest(signed)
    f = m["variants"][0]["files"][0]
    evil = b"not the model that was signed"
    (signed / f["path"]).write_bytes(evil)
    f["size"], f["sha256"] = len(evil), hashlib.sha256(evil).hexdigest()
    (signed / "manifest.json").write_text(json.dumps(m, indent=2))
    open_verified(signed)  # without a trusted key the forgery is consistent: exactly why signing exists
    refused(signed, [keys["old"][1]], UNTRUSTED, "manifest.json: changed after it was signed by key")


def test_attack_a_manifest_signed_by_another_key(signed, keys):
    cli(["sign", signed, "--key", keys["other"][0]])  # someone with write access and their own key
    refused(signed, [keys["old"][1]], UNTRUSTED, f"signed by key {kid(keys['other'][1])}, which this device "
                                                 "does not trust")


def test_attack_the_signature_file_removed(signed, keys):
    (signed / SIG_NAME).unlink()
    refused(signed, [keys["old"][1]], UNTRUSTED, "no manifest.sig: the package is unsigned and this device accepts "
                                                 "only packages signed by a trusted key")


def test_attack_an_older_package_pushed_back(signed, keys):
    refused(signed, [keys["old"][1]], ROLLBACK, "sequence 5 is lower than the installed package's 6: refusing a "
                                                "rollback", min_sequence=6)
    assert PackageRollback.exit_code == ROLLBACK


def test_a_forged_signature_and_a_damaged_file_are_told_apart(signed, keys):
    doc = json.loads((signed / SIG_NAME).read_text())
    sig = bytearray(base64.b64decode(doc["signatures"][0]["signature"]))
    sig[0] ^= 1
    doc["signatures"][0]["signature"] = base64.b64encode(bytes(sig)).decode()
    (signed / SIG_NAME).write_text(json.dumps(doc))
    refused(signed, [keys["old"][1]], UNTRUSTED, f"manifest.sig: the signature of key {kid(keys['old'][1])} does "
                                                 "not match manifest.json: the signature was altered or forged")
    cli(["sign", signed, "--key", keys["old"][0]])
    f = signed / manifest(signed)["variants"][0]["files"][0]["path"]
    f.write_bytes(b"x" + f.read_bytes()[1:])  # damaged after signing, manifest intact: a copy to fetch again
    refused(signed, [keys["old"][1]], PACKAGE, "sha256")


def test_the_signature_survives_a_reformatted_manifest(signed, keys):
    """Canonical bytes: any re-serialisation with the same content verifies (indent, key order, 1 vs 1.0,
    escapes), and any change of content does not."""
    m = manifest(signed)

    def reorder(x):
        if isinstance(x, dict):
            return {k: reorder(x[k]) for k in reversed(list(x))}
        return [reorder(v) for v in x] if isinstance(x, list) else x

    text = json.dumps(reorder(m), indent=4, ensure_ascii=True).replace('"storage_mb": 2048', '"storage_mb": 2048.0')
    assert '"storage_mb": 2048.0' in text
    (signed / "manifest.json").write_text(text)
    cli(["inspect", signed, "--trusted-key", keys["old"][1]], 0, "signature verified")
    (signed / "manifest.json").write_text(text.replace('"storage_mb": 2048.0', '"storage_mb": 2048.5'))
    refused(signed, [keys["old"][1]], UNTRUSTED, "changed after it was signed")


def test_a_key_named_twice_in_one_object_is_refused(signed, keys):
    text = (signed / "manifest.json").read_text()
    (signed / "manifest.json").write_text(text.replace('"sequence": 5', '"sequence": 5, "sequence": 9'))
    with pytest.raises(PackageError, match="key 'sequence' appears twice in one object"):
        read_manifest(signed)


def test_labels_are_checked_against_the_signed_classes(signed, keys):
    from toolkit.switcher import Package

    labels = signed / "labels.txt"
    labels.write_text(labels.read_text().replace("cat", "dog", 1))
    with pytest.raises(PackageError, match=r"labels.txt does not match the manifest's task.classes .*line 4"):
        Package(signed, trusted_keys=[keys["old"][1]])


def test_an_unsigned_package_opens_with_one_warning_where_no_key_is_trusted(tmp_path, keys, caplog):
    pkg = tmp_path / "pkg"
    small_package(pkg)
    with caplog.at_level(logging.WARNING, "toolkit"):
        open_verified(pkg)
    assert len(caplog.records) == 1 and "unsigned (no manifest.sig): opened because no trusted key is configured" \
        in caplog.records[0].getMessage()
    out = cli(["inspect", pkg], 0, "files verified", "unsigned (no manifest.sig)")
    assert "signature verified" not in out
    cli(["sign", pkg, "--key", keys["new"][0]])
    cli(["inspect", pkg], 0, f"signed by key {kid(keys['new'][1])}, signature not checked")


# ---- key rotation and sequences ----
def test_key_rotation_sign_with_both_ship_then_drop_the_old_key(signed, keys):
    old, new = keys["old"], keys["new"]
    out = cli(["sign", signed, "--key", old[0], "--key", new[0]])
    assert "dropped" not in out and manifest(signed)["key_ids"] == [kid(old[1]), kid(new[1])]
    for trusted in ([old[1]], [new[1]], [new[1], keys["other"][1]]):  # any one trusted key suffices
        cli(["inspect", signed, *sum((["--trusted-key", k] for k in trusted), [])], 0, "signature verified")
    cli(["sign", signed, "--key", new[0]], 0, f"dropped the signature of key {kid(old[1])}")
    assert manifest(signed)["sequence"] == 5, "re-signing keeps the sequence"
    assert [s["key_id"] for s in json.loads((signed / SIG_NAME).read_text())["signatures"]] == [kid(new[1])]
    cli(["inspect", signed, "--trusted-key", new[1]], 0, "signature verified")
    refused(signed, [old[1]], UNTRUSTED, "which this device does not trust")


def test_sequences_only_grow(signed, keys, tmp_path):
    cli(["sign", signed, "--key", keys["old"][0], "--sequence", "4"], USAGE, "the package already has sequence 5")
    cli(["sign", signed, "--key", keys["old"][0], "--sequence", "7"], 0, "sequence 7")
    assert next_sequence(signed, None) == 8 and next_sequence(tmp_path / "new", None) == 1
    assert next_sequence(signed, 9) == 9
    with pytest.raises(UsageError, match=r"--sequence 7: the package in .* has sequence 7.*pass --sequence 8"):
        next_sequence(signed, 7)
    old = tmp_path / "old"
    small_package(old)  # a package from before manifest 1.6: no sequence, older than any sequenced one
    assert next_sequence(old, None) == 1
    refused(old, [], ROLLBACK, "sequence 0 is lower than the installed package's 1", min_sequence=1)


def test_signing_refuses_a_damaged_package_and_swaps_a_whole_one_in(signed, keys):
    f = signed / manifest(signed)["variants"][0]["files"][0]["path"]
    good = f.read_bytes()
    before = {p.name: p.read_bytes() for p in signed.iterdir() if p.is_file()}
    f.write_bytes(b"damaged")
    cli(["sign", signed, "--key", keys["new"][0]], PACKAGE, "refusing to sign a damaged package")
    assert {p.name: p.read_bytes() for p in signed.iterdir() if p.is_file()} == before, "a refused sign wrote"
    f.write_bytes(good)
    inode = f.stat().st_ino
    cli(["sign", signed, "--key", keys["new"][0]])
    assert f.stat().st_ino == inode, "the variants were copied, not linked into the new package"
    assert sorted(p.name for p in signed.parent.iterdir()) == [".pkg.lock", "pkg"], "staging left behind"
    cli(["inspect", signed, "--trusted-key", keys["new"][1]], 0, "signature verified")


def test_inspect_exit_codes_are_distinct_and_documented():
    doc = (ROOT / "docs" / "reliability.md").read_text()
    assert PackageUntrusted.exit_code == UNTRUSTED and issubclass(PackageUntrusted, PackageError)
    for needle in ("no manifest.sig", "changed after it was signed", "which this device does not trust",
                   "refusing a rollback"):
        assert needle in doc, needle


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command")
def test_openssl_verifies_a_signature_as_firmware_would(signed, keys, tmp_path):
    """The C++ side's route: the manifest's RFC 8785 bytes, the signature from manifest.sig, the .pub as
    written, checked by OpenSSL; and the key id the documented openssl pipeline computes."""
    from toolkit.canonical import canonical_bytes

    (tmp_path / "signed.bin").write_bytes(canonical_bytes(manifest(signed)))
    entry = json.loads((signed / SIG_NAME).read_text())["signatures"][0]
    (tmp_path / "sig.bin").write_bytes(base64.b64decode(entry["signature"]))
    res = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(keys["old"][1]), "-rawin",
                          "-in", str(tmp_path / "signed.bin"), "-sigfile", str(tmp_path / "sig.bin")],
                         capture_output=True, text=True)
    assert res.returncode == 0 and "Signature Verified Successfully" in res.stdout, res.stdout + res.stderr
    der = subprocess.run(["openssl", "pkey", "-pubin", "-in", str(keys["old"][1]), "-outform", "DER"],
                         capture_output=True, check=True).stdout
    assert hashlib.sha256(der[-32:]).hexdigest()[:16] == entry["key_id"]
    (tmp_path / "signed.bin").write_bytes(canonical_bytes({**manifest(signed), "sequence": 6}))
    res = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(keys["old"][1]), "-rawin",
                          "-in", str(tmp_path / "signed.bin"), "-sigfile", str(tmp_path / "sig.bin")],
                         capture_output=True, text=True)
    assert res.returncode != 0


def test_the_package_readme_tells_firmware_how_to_verify_with_calls_that_exist():
    import inspect

    from helpers import SEED_MANIFEST
    from restnet.package.firmware import readme
    from toolkit.switcher import Package

    text = readme(json.loads(SEED_MANIFEST.read_text()))
    assert "manifest.sig" in text and "Key rotation" in text and "RFC 8785" in text
    assert {"trusted_keys", "min_sequence"} <= set(inspect.signature(Package).parameters)
    assert "Package(path, trusted_keys=" in text and "--trusted-key" in text and "--min-sequence" in text


# ---- the pack and the device ----
@pytest.mark.slow
def test_pack_signs_and_the_next_pack_takes_the_next_sequence(tmp_path, keys):
    out = tmp_path / "rpi5"
    with restnet_cache(tmp_path / "cache"):
        # A profile that prices nothing by host latency: timing the anchors' .pte files is not what is tested.
        args = ["pack", "--profile", "rpi5", "--out", out, *TINY_PACK, "--budgets-between", "1", "--no-anchors"]
        cli([*args, "--sign-key", keys["old"][0], "--sign-key", keys["new"][0]], 0, "signed by key")
        assert manifest(out)["sequence"] == 1
        cli(["inspect", out, "--trusted-key", keys["new"][1], "--min-sequence", "1"], 0, "signature verified")
        cli([*args, "--sign-key", keys["new"][0], "--sequence", "1"], USAGE, "has sequence 1")
        cli([*args, "--sign-key", keys["new"][0]], 0)  # cached stages: the same files, re-signed
    m = manifest(out)
    assert m["sequence"] == 2 and m["key_ids"] == [kid(keys["new"][1])]
    assert sorted(p.name for p in out.parent.iterdir()) == [".rpi5.lock", "cache", "rpi5"]
    refused(out, [keys["old"][1]], UNTRUSTED, "which this device does not trust")


@pytest.mark.skipif(not DEVICE_PY.exists(), reason="no .venv-device (scripts/setup.sh makes it)")
def test_the_torch_free_toolkit_verifies_and_refuses(signed, keys):
    code = ("import sys\nfrom toolkit.switcher import Package\nfrom toolkit.errors import PackageError\n"
            "p = Package(sys.argv[1], trusted_keys=[sys.argv[2]], min_sequence=5)\n"
            "print('OPENED', p.manifest['sequence'], len(p.variants))\n"
            "try:\n    Package(sys.argv[1], trusted_keys=[sys.argv[3]])\n"
            "except PackageError as err:\n    print('REFUSED', err.exit_code, err)\n"
            "assert 'torch' not in sys.modules\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    res = subprocess.run([str(DEVICE_PY), "-c", code, str(signed), str(keys["old"][1]), str(keys["other"][1])],
                         cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "OPENED 5 3" in res.stdout and "REFUSED 10" in res.stdout and "does not trust" in res.stdout
    res = subprocess.run([str(DEVICE_PY), "-m", "toolkit.bench", str(signed), "--trusted-key", str(keys["old"][1]),
                          "--min-sequence", "6"], cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == ROLLBACK and "refusing a rollback" in res.stderr, res.stderr

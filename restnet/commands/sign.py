"""`restnet keygen` and `restnet sign`: the keys that sign packages, and signing a package already built.

`restnet-pack --sign-key` signs while it packs; these are for making keys and for signing (or re-signing,
e.g. when rotating keys) a package that exists. How it works: restnet.package.signing.
"""
from __future__ import annotations

from pathlib import Path

import click


def register(main, console, log_console):
    @main.command()
    @click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
    @click.option("--name", default="restnet", show_default=True, help="File names: NAME.key and NAME.pub.")
    def keygen(folder: Path, name: str) -> None:
        """Make an Ed25519 key pair in FOLDER: NAME.key (private, mode 0600: keep it off devices and out of
        version control) and NAME.pub (for devices: restnet inspect --trusted-key, toolkit trusted_keys).
        An existing key is never replaced."""
        from restnet.package.signing import keygen as make

        private, public, kid = make(folder, name)
        console.print(f"key {kid}: private {private} (mode 0600), public {public}", markup=False, highlight=False,
                      soft_wrap=True)

    @main.command()
    @click.argument("package", type=click.Path(exists=True, file_okay=False, path_type=Path))
    @click.option("--key", "keys", multiple=True, required=True, metavar="KEY",
                  type=click.Path(exists=True, dir_okay=False, path_type=Path),
                  help="Ed25519 private key (restnet keygen); repeat to sign with several (key rotation).")
    @click.option("--sequence", type=click.IntRange(min=1), default=None,
                  help="Set the package's sequence (never lower than it has) [default: keep it; 1 if it has none].")
    def sign(package: Path, keys: tuple[Path, ...], sequence: int | None) -> None:
        """Sign PACKAGE's manifest (every file's sha256 and size, its sequence and the signing keys' ids) into
        manifest.sig, after checking every file. Sign with every key the package should carry in one run: a
        changed manifest (other keys, a new sequence) invalidates the signatures it had."""
        from restnet.package.signing import load_signing_key, sign_package

        loaded = [load_signing_key(k) for k in keys]
        m, dropped = sign_package(package, loaded, sequence)
        if dropped:
            log_console.print(f"dropped the signature of key {', '.join(dropped)}: the manifest changed, so it no "
                              "longer covers it; pass --key for that key too to keep it", style="yellow",
                              markup=False, soft_wrap=True)
        console.print(f"{package}: signed by key {', '.join(m['key_ids'])}; sequence {m['sequence']}; "
                      f"schema {m['schema_version']}", markup=False, highlight=False, soft_wrap=True)

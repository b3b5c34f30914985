"""One error type per class of failure, one exit code each (the table is in docs/reliability.md).

A script that drives restnet (a build system, CI, a device's updater) decides what to do from the exit
code alone: fix the command line (2), the profile (3), the data (4), the weights (5), the package or
its latency table (6), the exported files (7), the output folder or disk (8), wait for another pack (9),
do not install an untrusted package (10: signature or key) or an older one (11: rollback).
The types live here, at the bottom of the layers, so that restnet and the torch-free device side raise
the same ones; each restnet error also keeps the built-in base its callers already catch (ValueError,
FileNotFoundError, ...).
"""
from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable

EXIT_INTERNAL = 1  # a bug in restnet, not in the input: the message asks for --debug and a report
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it
DEBUG_ENV = "RESTNET_DEBUG"  # set (or --debug) to see tracebacks


class RestnetError(Exception):
    """A failure the user can fix; the message says what, where (file, field, line) and how."""

    exit_code = EXIT_INTERNAL
    label = "error"

    def __str__(self) -> str:  # KeyError subclasses would otherwise print the message as a repr
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class UsageError(RestnetError):
    exit_code, label = 2, "bad command-line argument"


class ProfileInvalid(RestnetError):
    exit_code, label = 3, "bad profile or budget"


class DataInvalid(RestnetError):
    exit_code, label = 4, "bad data"


class WeightsInvalid(RestnetError):
    exit_code, label = 5, "bad weights"


class PackageInvalid(RestnetError):
    exit_code, label = 6, "bad package or latency table"


class PackageError(PackageInvalid, ValueError):
    """A package that must not be loaded; the message says which file and why."""


class PackageUntrusted(PackageError):
    """Unsigned where a signature is required, signed by no trusted key, or changed since it was signed: an
    updater reports it as an attack or a misconfigured key, not as a damaged copy (6) to fetch again."""

    exit_code, label = 10, "package not trusted (signature or key)"


class PackageRollback(PackageError):
    """Validly signed but older than the package the device has installed."""

    exit_code, label = 11, "package older than the installed one (rollback)"


class ExportFailed(RestnetError):
    exit_code, label = 7, "exported file failed its check or cannot run"


class OutputUnwritable(RestnetError):
    exit_code, label = 8, "cannot write the output"


class Busy(RestnetError):
    exit_code, label = 9, "another pack is writing the same package"


EXIT_CODES = {0: "success", EXIT_INTERNAL: "internal error (a bug: rerun with --debug and report it)",
              **{c.exit_code: c.label for c in (UsageError, ProfileInvalid, DataInvalid, WeightsInvalid,
                                                PackageInvalid, ExportFailed, OutputUnwritable, Busy, PackageUntrusted,
                                                PackageRollback)},
              EXIT_INTERRUPTED: "interrupted (Ctrl-C)"}
# Errors of the file system that are the output's fault, not restnet's: full disk, quota, read-only, access.
OUTPUT_ERRNOS = {28, 122, 30, 13, 1}  # ENOSPC, EDQUOT, EROFS, EACCES, EPERM


def debug_on() -> bool:
    return bool(os.environ.get(DEBUG_ENV))


def classify(err: BaseException) -> tuple[int, str]:
    """(exit code, one message) for any exception: what the top-level handlers print."""
    if isinstance(err, RestnetError):
        return err.exit_code, str(err)
    if isinstance(err, KeyboardInterrupt):
        return EXIT_INTERRUPTED, "interrupted"
    if isinstance(err, OSError) and err.errno in OUTPUT_ERRNOS:
        where = f" {err.filename}" if err.filename else ""
        return OutputUnwritable.exit_code, (f"cannot write{where}: {err.strerror}. Free space or choose a "
                                            "writable folder (--out), then rerun")
    return EXIT_INTERNAL, (f"internal error: {type(err).__name__}: {err}. This is a bug in restnet, not in "
                           f"your input; rerun with --debug (or {DEBUG_ENV}=1) for the traceback and report it")


def run_main(main: Callable[[], int], prog: str) -> int:
    """Run an argparse-style ``main`` with the same error contract as the click commands."""
    try:
        return main()
    except SystemExit:
        raise
    except BaseException as err:  # noqa: BLE001 - every failure becomes one message and its code
        if debug_on() and not isinstance(err, KeyboardInterrupt):
            traceback.print_exc()
        code, msg = classify(err)
        print(f"{prog}: error: {msg}", file=sys.stderr)
        return code

"""Interrupted, concurrent and crowded packs: nothing finished is lost, nothing half-done is trusted.

``restnet-pack`` runs as a real process (what a user's Ctrl-C or the OOM killer hits); the stage it is
in is read from its own progress lines on stderr. One uninterrupted pack (module fixture) is the
reference every other run must reproduce file for file (same variants, same sha256: every stage is
seeded and the exporters are deterministic).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import TINY_PACK

from restnet.cli import main
from restnet.progress import STEP_DELAY_ENV
from toolkit.package import open_verified

# One stitched variant, no anchors, params budgets: the cheapest pack that still runs every stage.
# TINY's stages take well under a second on a quiet machine, less than a signal sent on a stage's first
# line may need to land inside it. 512 adaptation images and 16 CKA repeats give adapt and CKA several
# steps each, and the interrupted packs sleep STEP_DELAY after every step of a long loop (the
# RESTNET_TEST_STEP_DELAY hook in restnet.progress), so the signal lands inside the stage's work on any
# machine.
PACK = ["--profile", "rpi4", "--metric", "params", "--budgets-between", "1", "--no-anchors", *TINY_PACK,
        "--train-size", "512", "--cka-repeats", "16"]
EXE = str(Path(sys.executable).with_name("restnet-pack"))
ORDER = ("check budgets", "adapt anchors", "CKA", "select", "train stitches", "evaluate", "export + verify",
         "write package")
# How long after a stage's first line the signal goes: inside the stage's work, not at its edge.
DELAY = {"adapt anchors": 0.5, "CKA": 0.0, "train stitches": 0.5, "export + verify": 1.5}
INT, KILL = signal.SIGINT, signal.SIGKILL
CHAINS = {"kill-int-kill-int": [("adapt anchors", KILL), ("CKA", INT), ("train stitches", KILL),
                                ("export + verify", INT)],
          "int-kill-int-kill": [("adapt anchors", INT), ("CKA", KILL), ("train stitches", INT),
                                ("export + verify", KILL)]}


STEP_DELAY = 0.2


def _env(cache: Path, slow: bool = False) -> dict:
    return {**os.environ, "RESTNET_CACHE": str(cache), "PYTHONUNBUFFERED": "1",
            STEP_DELAY_ENV: str(STEP_DELAY if slow else 0)}


def _ctrl_c_as_at_a_terminal() -> None:
    # A test run started in the background by a non-interactive shell (`pytest ... &`, nohup) inherits
    # SIGINT ignored, and Python then installs no KeyboardInterrupt handler: every SIGINT below would be
    # lost and the pack would run on (seen as "CKA had finished before the signal"). A user's Ctrl-C
    # reaches a pack with the default disposition, so the test gives it that.
    signal.signal(INT, signal.SIG_DFL)


def _start(cache: Path, out: Path, slow: bool = False) -> subprocess.Popen:
    return subprocess.Popen([EXE, *PACK, "--out", str(out)], env=_env(cache, slow), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_ctrl_c_as_at_a_terminal)


def _files(pkg: Path) -> dict[str, str]:
    """{variant id / format: sha256} of a verified package."""
    _, m = open_verified(pkg)
    return {f"{v['id']}/{f['format']}": f["sha256"] for v in m["variants"] for f in v["files"]}


def _cache_state(cache: Path) -> dict[str, int]:
    """Every finished cache entry and when it was written (the stage-time table is rewritten by design)."""
    return {str(p.relative_to(cache)): p.stat().st_mtime_ns for p in cache.rglob("*")
            if p.is_file() and p.name != "pack-stage-seconds.json" and ".tmp" not in p.name}


def _leftovers(out: Path) -> list[str]:
    return [p.name for p in out.parent.glob(f".{out.name}.*") if not p.name.endswith(".lock")]


@dataclass
class Baseline:
    out: Path
    cache: Path
    files: dict[str, str]
    busy: object  # the CliRunner result of a second pack started while this one ran


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Baseline:
    """An uninterrupted pack; while it runs, a second pack to the same folder is tried (it must refuse)."""
    root = tmp_path_factory.mktemp("baseline")
    cache, out = root / "cache", root / "pkg"
    p = _start(cache, out)
    for line in p.stderr:
        if "] adapt anchors (" in line:
            break
    busy = CliRunner().invoke(main, ["pack", *PACK, "--out", str(out)], env={"RESTNET_CACHE": str(cache)})
    err = p.stderr.read()
    assert p.wait(timeout=900) == 0, err
    return Baseline(out, cache, _files(out), busy)


def _interrupt(cache: Path, out: Path, stage: str, sig: int) -> tuple[int, str]:
    p = _start(cache, out, slow=True)
    seen = []
    for line in p.stderr:
        seen.append(line)
        if f"] {stage} (" in line:
            time.sleep(DELAY[stage])
            p.send_signal(sig)
            break
    else:
        pytest.fail(f"the pack ended before {stage}:\n{''.join(seen)}")
    rest = p.stderr.read()
    p.wait(timeout=300)
    after = ORDER[ORDER.index(stage) + 1]
    assert f"] {after} (" not in rest, f"{stage} had finished before the signal:\n{rest}"
    return p.returncode, "".join(seen) + rest


@pytest.mark.slow
def test_a_second_pack_to_the_same_folder_stops_with_a_clear_message(baseline):
    res = baseline.busy
    assert res.exit_code == 9, res.output
    assert "another restnet-pack (pid" in res.output and "is writing this package" in res.output
    assert "Traceback" not in res.output


@pytest.mark.slow
@pytest.mark.parametrize("chain", list(CHAINS))
def test_an_interrupted_pack_resumes_and_equals_an_uninterrupted_one(chain, baseline, tmp_path):
    cache, out = tmp_path / "cache", tmp_path / "pkg"
    shutil.copytree(baseline.out, out)  # the previous package, which must survive every interruption
    # The anchors' host .pte files and timings (rpi4 prices latency from them at "check budgets", before the first
    # stage a chain interrupts) come from the baseline: two lowerings, about a minute, that no interruption
    # reaches. A timing the host was too busy to take is not cached, and each pack of the chain takes it again.
    for timing in ("anchor-pte", "anchor-pte-ms"):
        if (baseline.cache / timing).is_dir():
            shutil.copytree(baseline.cache / timing, cache / timing)
    previous = _files(out)
    for stage, sig in CHAINS[chain]:
        done = _cache_state(cache) if cache.exists() else {}
        code, log = _interrupt(cache, out, stage, sig)
        if sig == INT:
            assert code == 130 and "Error: interrupted" in log and "Kept:" in log and "Traceback" not in log, log
            assert not _leftovers(out), "an interrupted pack left its staging folder behind"
        else:
            assert code == -signal.SIGKILL
        assert _files(out) == previous, f"the previous package changed when the pack was interrupted in {stage}"
        now = _cache_state(cache)
        assert {k: now.get(k) for k in done} == done, f"finished cache entries were rewritten during {stage}"
    done = _cache_state(cache)
    p = subprocess.run([EXE, *PACK, "--out", str(out)], env=_env(cache), capture_output=True, text=True,
                       timeout=900)
    assert p.returncode == 0, p.stderr
    now = _cache_state(cache)
    assert {k: now.get(k) for k in done} == done, "the final run recomputed stages that were already cached"
    assert _files(out) == baseline.files
    assert not _leftovers(out), "a killed pack's staging folder was not cleaned up"


def _corrupt(cache: Path) -> list[str]:
    """Damage one entry of each kind, each in its own way; returns what was damaged."""
    done = []
    anchor = sorted((cache / "task-anchors").glob("tf_efficientnet_lite0-*.pt"))[0]
    anchor.write_bytes(anchor.read_bytes()[: anchor.stat().st_size // 2])  # truncated
    cka = sorted((cache / "cka").glob("*.json"))[0]
    raw = bytearray(cka.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # one flipped bit: still valid JSON, wrong numbers
    cka.write_bytes(bytes(raw))
    ckpt = sorted((cache / "variants").glob("*/checkpoint.pt"))[0]
    ckpt.with_name(ckpt.name + ".sha256").unlink()  # written without its checksum (an older writer, a crash)
    record = sorted((cache / "exports").glob("*/record.json"))[0]
    record.write_text("{")  # half-written
    for p in (anchor, cka, ckpt, record):
        done.append(str(p))
    return done


@pytest.mark.slow
def test_a_damaged_cache_entry_is_recomputed_never_trusted(baseline, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(baseline.cache, cache)
    damaged = _corrupt(cache)
    res = CliRunner().invoke(main, ["pack", *PACK, "--out", str(tmp_path / "pkg")], env={"RESTNET_CACHE": str(cache)})
    assert res.exit_code == 0, res.output
    for path in damaged:
        assert f"cache entry {path}" in res.output and "recomputing it" in res.output, res.output
    assert _files(tmp_path / "pkg") == baseline.files


@pytest.mark.slow
def test_a_full_disk_during_export_keeps_the_previous_package(baseline, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    size = sum(p.stat().st_size for p in baseline.out.rglob("*") if p.is_file())
    kib = (size + (1 << 20)) // 1024  # room for the previous package and 1 MiB: not for a second package
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(disk)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a size-limited tmpfs here")
    try:
        out = disk / "pkg"
        shutil.copytree(baseline.out, out)
        cache = tmp_path / "cache"
        shutil.copytree(baseline.cache, cache)  # warm: the pack goes straight to writing files
        res = CliRunner().invoke(main, ["pack", *PACK, "--out", str(out)], env={"RESTNET_CACHE": str(cache)})
        assert res.exit_code == 8, res.output
        assert f"--out {out}: cannot write the new package beside it in {disk} (No space left on device" \
            in res.output and "the previous package is unchanged" in res.output and "Traceback" not in res.output
        assert "] export + verify (" in res.output and "] write package (" not in res.output
        assert _files(out) == baseline.files
        assert not _leftovers(out), "the failed pack's staging folder is still taking the space"
    finally:
        subprocess.run(["umount", str(disk)], check=True)

"""The aarch64 stand-in (scripts/aarch64-standin.sh): a tiny package checked under QEMU user emulation.

Building the stand-in (an arm64 Debian root filesystem plus the device
requirements, installed by pip under emulation) takes minutes and needs root
and network, so this test never builds it: it runs when the stand-in is
already built here and skips with the reason otherwise.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import TINY_PACK, restnet_cache

from restnet.cli import main

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "aarch64-standin.sh"
TINY = [*TINY_PACK, "--budgets-between", "1"]


def _standin_status() -> tuple[bool, str]:
    try:
        res = subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        return False, str(err)
    return res.returncode == 0, (res.stdout + res.stderr).strip()


@pytest.mark.slow
def test_tiny_package_checked_on_aarch64_under_qemu(tmp_path):
    ok, why = _standin_status()
    if not ok:
        pytest.skip(f"aarch64 stand-in not available ({why}); build it with "
                    "`bash scripts/aarch64-standin.sh build` (minutes, needs root and network)")
    out = tmp_path / "rpi4"
    with restnet_cache(tmp_path / "cache"):
        res = CliRunner().invoke(main, ["pack", "--profile", "rpi4", "--out", str(out), "--int8", *TINY],
                                 catch_exceptions=False)
        assert res.exit_code == 0, res.output
        check = subprocess.run(["bash", str(SCRIPT), "check", str(out), "--runs", "2"], capture_output=True,
                               text=True, timeout=1800)
    text = check.stdout + check.stderr
    assert check.returncode == 0, text
    assert "machine: aarch64 EMULATED: aarch64 (qemu-user)" in text and "RESULT: PASS" in text
    assert "paths and sha256 verified" in text and "(ok)" in text  # the switcher switched without reloading
    rows = [ln for ln in text.splitlines() if ln.startswith("variants/")]
    assert len(rows) == 2 * 3  # anchors + one stitched variant, an fp32 and an int8 file each
    assert all(ln.endswith("PASS") for ln in rows if " fp32 " in ln)
    assert all(ln.endswith("report") for ln in rows if " int8 " in ln)
    assert "EMULATED (aarch64 (qemu-user))" in text

"""Every argparse command line answers --help: the toolkit's modules (on the device) and the benchmarks'
scripts (restnet's own commands are click's, checked by their own tests). argparse expands a help string
with %, so a figure such as "99.9%" in one crashes --help with a traceback instead of printing it."""
from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted([*(ROOT / "benchmarks").glob("[!_]*.py"), *(ROOT / "toolkit").glob("*.py")])
MAINS = [p for p in SCRIPTS if 'if __name__ == "__main__"' in p.read_text()]


def test_there_are_command_lines_to_check():
    names = {p.name for p in MAINS}
    assert {"app_check.py", "bench.py", "crosscheck.py", "firmware_parity.py", "busy_latency.py"} <= names


@pytest.mark.parametrize("script", MAINS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_help_prints_and_exits_zero(script, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [str(script), "--help"])
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.syspath_prepend(str(script.parent))  # as `python benchmarks/x.py` puts its folder first
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(script), run_name="__main__")
    assert exit_.value.code in (0, None)
    assert "usage:" in capsys.readouterr().out

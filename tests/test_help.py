"""Every command line answers --help: the toolkit's modules (on the device), the benchmarks' scripts and
restnet's own verbs. argparse expands a help string with %, so a figure such as "99.9%" in one crashes
--help with a traceback instead of printing it."""
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


def test_every_restnet_command_answers_help():
    """restnet's own commands (click): the group and each verb, as `restnet VERB --help` prints them."""
    from click.testing import CliRunner

    from restnet.cli import main

    runner = CliRunner()
    assert main.commands, "restnet has no verbs"
    for args in ([], *([name] for name in main.commands)):
        res = runner.invoke(main, [*args, "--help"])
        assert res.exit_code == 0 and "Usage:" in res.output, (args, res.output)

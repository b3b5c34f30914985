"""Shared bits for benchmark scripts: thread setup, tables, JSON output."""
from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def setup_threads(threads: int) -> dict:
    torch.set_num_threads(threads)
    return {"threads": threads, "torch": torch.__version__, "cpu_count": os.cpu_count(),
            "machine": platform.machine(), "python": platform.python_version()}


def emit(name: str, rows: list[dict], summary: dict, out: str | None) -> None:
    """Print a table and a JSON document (also written to ``out`` if given)."""
    from rich.console import Console
    from rich.table import Table

    if rows:
        t = Table(title=name)
        for k in rows[0]:
            t.add_column(k)
        for r in rows:
            t.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in r.values()])
        Console(width=140).print(t)
    doc = {"benchmark": name, "rows": rows, **summary}
    text = json.dumps(doc, indent=2)
    print(text)
    if out:
        Path(out).write_text(text)

"""A new profile field is its line in the profile, a row if the command line may override it, and a line in the
manifest if the manifest records it: the worked example docs/architecture.md ("Add a profile field") points to.

``EDITS`` are those three edits, as text inserted into the three source files; a fresh process runs restnet
with them (the modules made from the edited text, nothing else changed) and finds the field validated in a
YAML file, overridden by its option (type and help from the field), recorded in the manifest's profile
section and its schema, and listed in the generated field table.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# (module, file, the line the edit goes before, the edit)
EDITS = [
    ("restnet.profiles", "restnet/profiles.py", "    @property\n    def model_ram_mb(self)",
     '    power_w: PositiveFloat | None = Field(default=None, description="The power the device may draw, in W.")\n\n'),
    ("restnet.package.manifest", "restnet/package/manifest.py", "    @classmethod\n    def of(cls, profile",
     '    power_w: float | None = Field(default=None, description="1.8: the power the device may draw, in W.")\n\n'),
    ("restnet.commands.pack", "restnet/commands/pack.py", '    click.option("--sign-key"',
     '    ProfileOption("--power-w", "power_w"),\n'),
]

_RUN = r'''
import importlib, json, sys
from pathlib import Path

import click
import yaml

root, edits, tmp = Path.cwd(), json.loads(sys.argv[1]), Path(sys.argv[2])
for name, rel, before, edit in edits:
    text = (root / rel).read_text()
    assert text.count(before) == 1, f"{rel}: the edit's place moved; update EDITS"
    parent, _, child = name.rpartition(".")
    importlib.import_module(parent)
    spec = importlib.util.spec_from_file_location(name, root / rel)
    module = sys.modules[name] = importlib.util.module_from_spec(spec)
    setattr(sys.modules[parent], child, module)
    exec(compile(text.replace(before, edit + before), str(root / rel), "exec"), module.__dict__)

from restnet import profiles
from restnet.commands import pack
from restnet.package import manifest as mf

data = yaml.safe_load((profiles.PROFILE_DIR / "rpi4.yaml").read_text())
(tmp / "dev.yaml").write_text(yaml.safe_dump({**data, "power_w": 6.4}))
(tmp / "bad.yaml").write_text(yaml.safe_dump({**data, "power_w": -1}))
try:
    profiles.load_profile(tmp / "bad.yaml")
    refused = ""
except profiles.ProfileError as err:
    refused = str(err)
option = next(p for p in pack.pack_command(None, None).params if p.name == "power_w")
ctx = click.Context(pack.pack_command(None, None))
req = pack.make_request(str(tmp / "dev.yaml"), tmp / "out", (), {"power_w": 5.0})
record = mf.ProfileInfo.of(req.profile, unit="MACs", budgets=[1.0], ram_budget_mb=1.0, budget_mode="ladder")
print(json.dumps({
    "yaml": profiles.load_profile(tmp / "dev.yaml").power_w, "refused": refused,
    "help": option.get_help_record(ctx)[1], "overridden": req.profile.power_w,
    "manifest": record.model_dump(mode="json", exclude_unset=True)["power_w"],
    "schema": mf.json_schema()["$defs"]["ProfileInfo"]["properties"]["power_w"]["description"],
    "table": [row for row in profiles.field_table().splitlines() if "power_w" in row],
}))
'''


def test_a_new_profile_field_is_its_line_its_row_and_its_manifest_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    edits = json.dumps([list(e) for e in EDITS])
    res = subprocess.run([sys.executable, "-c", _RUN, edits, str(tmp_path)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout.splitlines()[-1])
    assert got["yaml"] == 6.4
    assert "bad.yaml" in got["refused"] and "field 'power_w'" in got["refused"] and "greater than 0" in got["refused"]
    assert got["help"] == "The power the device may draw, in W [default: the profile's].  [x>0.0]"
    assert got["overridden"] == got["manifest"] == 5.0  # the option's value, recorded as the pack used it
    assert got["schema"].startswith("1.8:")
    assert got["table"] == ["| `power_w` | number > 0 | none | The power the device may draw, in W. |"]

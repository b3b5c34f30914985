"""Device profiles: every shipped one loads; every kind of mistake names the file and field."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from restnet.cli import main
from restnet.profiles import PROFILE_DIR, ProfileError, available, load_profile

SHIPPED = {"rpi4", "rpi5", "jetson-orin-nano", "pixel-7", "host"}


def test_shipped_profiles_load():
    assert SHIPPED <= set(available())
    for name in available():
        p = load_profile(name)
        assert p.name == name and p.hardware.source
    assert load_profile("pixel-7").backend == "tflite"
    assert load_profile("rpi4").backend == "executorch-xnnpack"
    assert load_profile(PROFILE_DIR / "rpi4.yaml") == load_profile("rpi4")
    assert {load_profile(n).bundle for n in available()} == {"files"}  # shared only when asked for


def test_a_profile_can_ask_for_a_shared_family_file(tmp_path):
    assert load_profile(_write(tmp_path, lambda d: d.update(bundle="shared"))).bundle == "shared"


def _write(tmp_path, mutate) -> Path:
    data = yaml.safe_load((PROFILE_DIR / "rpi4.yaml").read_text())
    mutate(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    return path



def test_compute_budget_is_read_under_its_old_name_too(tmp_path):
    """compute_gmacs was called compute_gflops (it always counted MACs): old profiles keep working."""
    def rename(d):
        d["compute_gflops"] = d.pop("compute_gmacs")

    assert load_profile(_write(tmp_path, rename)).compute_gmacs == load_profile("rpi4").compute_gmacs == 0.5


@pytest.mark.parametrize("mutate,field,words", [
    (lambda d: d.update(colour="red"), "colour", "unknown field"),
    (lambda d: d.update(threads="four"), "threads", "integer"),
    (lambda d: d["budgets"].update(values=[-1.0], between=None), "budgets.values.0", "greater than 0"),
    (lambda d: d.update(backend="coreml"), "backend", "executorch-xnnpack"),
    (lambda d: d["hardware"].pop("cores"), "hardware.cores", "required"),
    (lambda d: d["budgets"].update(values=[1e6]), "budgets", "exactly one"),
    (lambda d: d.update(bundle="zip"), "bundle", "'files' or 'shared'"),
])
def test_bad_fields_are_named(tmp_path, mutate, field, words):
    path = _write(tmp_path, mutate)
    with pytest.raises(ProfileError) as e:
        load_profile(path)
    msg = str(e.value)
    assert str(path) in msg and f"'{field}'" in msg and words in msg


def test_bad_yaml_and_unknown_name(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(ProfileError, match=f"{path}, line 2, column 1: not valid YAML"):  # the file, not <unicode string>
        load_profile(path)
    with pytest.raises(ProfileError, match="no profile named 'toaster' in .*; available: .*rpi4"):
        load_profile("toaster")


def test_profiles_verb_lists_them():
    res = CliRunner().invoke(main, ["profiles"])
    assert res.exit_code == 0, res.output
    for name in SHIPPED:
        assert name in res.stdout


def test_profiles_by_name_from_restnet_profiles_and_cwd(tmp_path, monkeypatch):
    """Own devices live outside restnet: $RESTNET_PROFILES first, then ./device_profiles, then the shipped."""
    data = yaml.safe_load((PROFILE_DIR / "rpi4.yaml").read_text())
    mine, proj = tmp_path / "mine", tmp_path / "proj" / "device_profiles"
    mine.mkdir()
    proj.mkdir(parents=True)
    (mine / "lab-board.yaml").write_text(yaml.safe_dump({**data, "name": "lab-board", "threads": 3}))
    (mine / "rpi4.yaml").write_text(yaml.safe_dump({**data, "threads": 1}))  # shadows the shipped rpi4
    (proj / "shop-floor.yaml").write_text(yaml.safe_dump({**data, "name": "shop-floor"}))
    monkeypatch.chdir(tmp_path / "proj")
    monkeypatch.setenv("RESTNET_PROFILES", str(mine))
    assert load_profile("lab-board").threads == 3 and load_profile("shop-floor").name == "shop-floor"
    assert load_profile("rpi4").threads == 1 and load_profile("pixel-7").backend == "tflite"
    assert {"lab-board", "shop-floor", *SHIPPED} <= set(available())
    with pytest.raises(ProfileError, match=r"no profile named 'nope' in .*mine.*RESTNET_PROFILES"):
        load_profile("nope")
    monkeypatch.delenv("RESTNET_PROFILES")
    assert load_profile("rpi4") == load_profile(PROFILE_DIR / "rpi4.yaml")


def _request(profile, **given):
    from restnet.commands.pack import make_request

    return make_request(str(profile), None, (), given)


def test_the_command_line_overrides_the_profile_once(tmp_path):
    """The request's profile is the profile with the options given on top, and the pack reads it there."""
    req = _request("rpi4", band=0.2, window=0.1, bundle="shared")
    b = req.profile.budgets
    assert (b.band, b.window, req.profile.bundle) == (req.band, req.window, req.bundle) == (0.2, 0.1, "shared")
    assert (b.metric, b.ladder, req.profile.threads) == ("flops", 3, 4)  # what was not given stays the profile's
    assert _request("rpi4").profile == load_profile("rpi4")


@pytest.mark.parametrize("given,mode", [
    ({}, ("flops", None, None, 3)),
    ({"budgets": (1e6, 2e6)}, ("flops", [1e6, 2e6], None, None)),
    ({"budgets_between": 4, "ladder": 2}, ("flops", None, 4, None)),
    ({"ladder": 2, "metric": "params"}, ("params", None, None, 2)),
])
def test_the_budget_options_choose_one_way_to_make_budgets(given, mode):
    b = _request("rpi4", **given).profile.budgets
    assert (b.metric, b.values, b.between, b.ladder) == mode


def test_a_profiles_values_in_another_metric_give_way(tmp_path):
    """Absolute budgets are in their metric's unit: asked for another metric, the pack plans 3 between."""
    path = _write(tmp_path, lambda d: d.update(budgets={"metric": "params", "values": [4e6, 5e6]}))
    assert _request(path).budgets == (4e6, 5e6)
    req = _request(path, metric="flops")
    assert (req.budgets, req.ladder, req.between) == ((), 0, 3)


def test_an_override_the_profile_refuses_is_a_usage_error_naming_the_option():
    """click's types are the fields' (tested below), so this is what a value that slips past them meets."""
    import click

    with pytest.raises(click.UsageError, match=r"--band: field 'budgets.band': Input should be less than 1"):
        _request("rpi4", band=1.5)
    with pytest.raises(click.BadParameter, match="budgets must be positive, got -1"):
        _request("rpi4", budgets=(-1.0,))


def test_each_profile_option_takes_what_its_field_takes():
    import click

    from restnet.commands.pack import PROFILE_OPTIONS, pack_command
    from restnet.profiles import profile_field

    params = {p.name: p for p in pack_command(None, None).params}
    assert [o.name for o in PROFILE_OPTIONS] == ["--metric", "--budget", "--budgets-between", "--ladder", "--window",
                                                 "--band", "--bundle", "--latency-table"]
    assert all(profile_field(o.field) and o.param in params for o in PROFILE_OPTIONS)
    assert params["band"].type.max_open and params["band"].type.max == 1.0 and params["window"].type.max == 1.0
    assert params["ladder"].type.min == params["budgets_between"].type.min == 1  # PositiveInt
    assert isinstance(params["metric"].type, click.Choice) and params["metric"].type.choices == ("params", "flops",
                                                                                                "latency")


def test_the_documented_fields_are_the_validated_ones():
    """docs/profiles.md's field table is the one made from the schema (its markers as the script reads them)."""
    import importlib.util

    from restnet.profiles import field_table

    spec = importlib.util.spec_from_file_location("profile_fields", PROFILE_DIR.parent / "scripts" / "profile_fields.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.committed(script.DOC.read_text(encoding="utf-8")) == field_table(), \
        "the profile fields changed: run .venv/bin/python scripts/profile_fields.py"
    assert "| `budgets.band` | number in [0, 1) | `0` | Beyond the paper" in field_table()

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

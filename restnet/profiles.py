"""Device profiles: YAML in ``device_profiles/`` -> a validated object.

A profile says what a device can afford (RAM share, storage, compute,
latency) and how models must be delivered to it (runtime backend, threads,
dtype, input resolution), plus the budgets that define its family of
variants in one cost metric. Every mistake in a file is reported with the
file and the field, before any heavy work starts.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    model_validator,
)

PROFILE_DIR = Path(__file__).resolve().parents[1] / "device_profiles"  # the shipped ones
PROFILES_ENV = "RESTNET_PROFILES"
BACKENDS = ("executorch-xnnpack", "tflite")


class ProfileError(ValueError):
    """A profile that cannot be used; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Hardware(_Strict):
    soc: str
    cpu: str
    cores: PositiveInt
    source: str = Field(description="Where the hardware figures come from.")


class Budgets(_Strict):
    metric: Literal["params", "flops", "latency"]
    values: list[PositiveFloat] | None = Field(
        default=None, description="Absolute budgets in the metric's unit (params, MACs, ms).")
    between: PositiveInt | None = Field(
        default=None, description="Or: this many budgets evenly spaced between the two anchors' costs.")
    ladder: PositiveInt | None = Field(
        default=None, description=(
            "Or: this many budgets from the small anchor's cost up to the device's binding limit (latency "
            "target, compute, RAM share, storage; the large anchor's cost when it fits). Points and anchors "
            "that break a limit are left out."))
    band: float = Field(default=0.0, ge=0, lt=1, description=(
        "Beyond the paper: a budget only accepts points costing >= band x budget (0 = Algorithm 1 as "
        "written). Keeps a family from collapsing onto one cheap high-CKA point."))
    window: float = Field(default=0.0, ge=0, le=1, description=(
        "Beyond the paper: a budget only accepts points costing >= budget - window x (distance to the next "
        "lower budget or the cheaper anchor). 0 = off. Gives each member its own slice of the cost range."))

    @model_validator(mode="after")
    def _one_of(self) -> "Budgets":
        if sum(x is not None for x in (self.values, self.between, self.ladder)) != 1:
            raise ValueError("give exactly one of 'ladder' (a count, up to the device's limits), 'between' "
                             "(a count, between the anchors) or 'values' (a list of budgets)")
        if self.values is not None and not self.values:
            raise ValueError("'values' must list at least one budget")
        return self


class LatencyEstimate(_Strict):
    host_scale: PositiveFloat = Field(description="Device latency = host latency (same runtime) x this factor.")
    source: str = Field(description="Where the factor comes from.")


class Profile(_Strict):
    name: str
    description: str
    hardware: Hardware
    ram_mb: PositiveInt
    model_ram_share: float = Field(gt=0, le=1, description="Share of RAM the model may use.")
    storage_mb: PositiveInt
    # Read under its first name too: profiles written before it was renamed keep working.
    compute_gmacs: PositiveFloat | None = Field(
        default=None, validation_alias=AliasChoices("compute_gmacs", "compute_gflops"),
        description="Max GMACs (multiply-adds, fvcore) per inference; 'compute_gflops' is the old name.")
    latency_target_ms: PositiveFloat | None = None
    backend: Literal["executorch-xnnpack", "tflite"]
    threads: PositiveInt
    dtype: Literal["fp32", "int8"] = "fp32"
    resolution: int = Field(ge=16, le=1024)
    budgets: Budgets
    latency_table: str | None = Field(default=None, description="A measured latency table (restnet-bench).")
    is_host: bool = Field(default=False, description="The device is this machine: latency is measured, not estimated.")
    latency_estimate: LatencyEstimate | None = Field(
        default=None, description="How to estimate device latency from host measurements until a table exists.")
    bundle: Literal["files", "shared"] = Field(default="files", description=(
        "'files': one file per variant; 'shared': the device format's variants as the methods (signatures) of "
        "one file that stores the anchors' weights once (restnet.package.bundle)."))

    @property
    def model_ram_mb(self) -> float:
        return self.ram_mb * self.model_ram_share


def _where(loc: tuple) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def profile_dirs() -> list[Path]:
    """Where profile names are looked up, first match wins: the folders in $RESTNET_PROFILES
    (os.pathsep-separated), ./device_profiles, then the shipped ones. A team keeps its own devices
    next to its project (or anywhere) without editing restnet, and can shadow a shipped profile."""
    dirs = [Path(d) for d in os.environ.get(PROFILES_ENV, "").split(os.pathsep) if d]
    dirs += [Path.cwd() / "device_profiles", PROFILE_DIR]
    seen, out = set(), []
    for d in dirs:
        key = d.resolve()
        if key not in seen and d.is_dir():
            seen.add(key)
            out.append(d)
    return out


def find_profile(name: str) -> Path | None:
    for d in profile_dirs():
        if (d / f"{name}.yaml").is_file():
            return d / f"{name}.yaml"
    return None


def load_profile(name_or_path: str | Path) -> Profile:
    """A profile by name (``NAME.yaml`` in ``profile_dirs()``) or by path."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        found = find_profile(str(name_or_path))
        if found is None:
            raise ProfileError(f"no profile named {name_or_path!r} in {', '.join(map(str, profile_dirs()))}; "
                               f"available: {', '.join(available())} (or give a path to a .yaml file, or add a "
                               f"folder to ${PROFILES_ENV})")
        path = found
    if not path.is_file():
        raise ProfileError(f"{path}: no such profile file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ProfileError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ProfileError(f"{path}: expected a mapping of fields at the top level, got {type(raw).__name__}")
    try:
        return Profile.model_validate(raw)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            msg = "unknown field (not allowed)" if e["type"] == "extra_forbidden" else e["msg"]
            lines.append(f"{path}: field '{_where(e['loc'])}': {msg}")
        raise ProfileError("\n".join(lines)) from None


def available() -> list[str]:
    return sorted({p.stem for d in profile_dirs() for p in d.glob("*.yaml")})

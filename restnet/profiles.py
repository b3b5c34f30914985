"""Device profiles: YAML in ``device_profiles/`` -> a validated object.

A profile says what a device can afford (RAM share, storage, compute,
latency) and how models must be delivered to it (runtime backend, threads,
dtype, input resolution), plus the budgets that define its family of
variants in one cost metric. Every mistake in a file is reported with the
file, the line and the field (and, for a misspelt field, the closest
names), before any heavy work starts.
"""
from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from types import UnionType
from typing import Annotated, Literal, Union, get_args, get_origin

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
from pydantic.fields import FieldInfo

from restnet.export import backends, literal
from toolkit.errors import ProfileInvalid

PROFILE_DIR = Path(__file__).resolve().parents[1] / "device_profiles"  # the shipped ones
PROFILES_ENV = "RESTNET_PROFILES"
BACKENDS = tuple(backends())  # what the export formats answer to (Format.backends), in their table's order
_Backend = literal(BACKENDS)


class ProfileError(ProfileInvalid, ValueError):
    """A profile that cannot be used; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Hardware(_Strict):
    """What the device is, for people (`restnet profiles` lists it); the pack decides nothing on it."""

    soc: str = Field(description="The system on chip.")
    cpu: str = Field(description="The CPU: cores, architecture, clock.")
    cores: PositiveInt = Field(description="CPU cores.")
    source: str = Field(description="Where the hardware figures come from.")


class Budgets(_Strict):
    metric: Literal["params", "flops", "latency"] = Field(description=(
        "The cost the budgets are in: 'params', 'flops' (MACs, fvcore multiply-adds) or 'latency' (ms; needs a "
        "latency table, is_host or latency_estimate)."))
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


class Int8(_Strict):
    """How ``--int8`` quantises (restnet.export.int8_recipe); the defaults are the measured recipe (docs/int8.md)."""

    calibration: PositiveInt = Field(default=256, description="Training images the activation ranges are calibrated on.")
    finetune_images: int = Field(default=20000, ge=0, description=(
        "Training images the int8 weights are fine-tuned on through their quantisers, towards the fp32 "
        "logits (0: post-training quantisation only)."))
    finetune_epochs: PositiveInt = Field(default=1, description="Passes over those images.")
    finetune_loss: Literal["mse", "kl"] = Field(default="mse", description=(
        "What the fine-tuning minimises: 'mse', the squared error of the int8 logits against the fp32 ones; "
        "'kl', the KL divergence of their softmax."))
    float_parts: list[Literal["entry", "classifier", "first", "dw"]] = Field(
        default=["entry", "classifier"], description=(
            "Parts of the int8 file left float: 'entry' (every conv up to and including the first depthwise "
            "one: the image's first rounding reaches every later layer), 'classifier' (the last linear: the "
            "logits are not rounded to an int8 grid), 'first' (the first conv), 'dw' (every depthwise conv). "
            "[] = a fully integer file (an .int8.tflite then takes and returns int8 tensors)."))


class Profile(_Strict):
    name: str = Field(description=(
        "The device's name: the package folder (artifacts/NAME) and every variant id start with it, and a "
        "latency table must have been measured on a package of the same name."))
    description: str = Field(description="The device in a line, for the manifest.")
    hardware: Hardware
    ram_mb: PositiveInt = Field(description="The device's RAM in MB.")
    model_ram_share: float = Field(gt=0, le=1, description=(
        "Share of RAM the model may use: a variant's peak-RAM estimate must fit ram_mb x this."))
    storage_mb: PositiveInt = Field(description=(
        "Storage for the package in MB: a stitch point's file (4 bytes a parameter) and the written package "
        "must fit it."))
    # Read under its first name too: profiles written before it was renamed keep working.
    compute_gmacs: PositiveFloat | None = Field(
        default=None, validation_alias=AliasChoices("compute_gmacs", "compute_gflops"),
        description="Max GMACs (multiply-adds, fvcore) per inference; 'compute_gflops' is the old name.")
    latency_target_ms: PositiveFloat | None = Field(default=None, description=(
        "The latency a variant must meet on the device, in ms, against the best device figure there is "
        "(restnet.package.limits); the toolkit's Switcher starts from it."))
    backend: _Backend = Field(description="The device's runtime: it selects the package's first format.")
    threads: PositiveInt = Field(description=(
        "Threads the device runs a model on (in the manifest); the host measures latency on as many, at most "
        "its own cores, unless --threads says otherwise."))
    dtype: Literal["fp32", "int8"] = Field(default="fp32", description=(
        "'int8': also ship an int8 file per variant, as --int8 does."))
    resolution: int = Field(ge=16, le=1024, description=(
        "Input resolution (square, pixels) of both anchors and every variant, unless --resolution is given."))
    budgets: Budgets = Field(description=(
        "The budgets the family is selected under: a metric and exactly one of ladder, between or values."))
    latency_table: str | None = Field(default=None, description="A measured latency table (restnet-bench).")
    is_host: bool = Field(default=False, description="The device is this machine: latency is measured, not estimated.")
    latency_estimate: LatencyEstimate | None = Field(
        default=None, description="How to estimate device latency from host measurements until a table exists.")
    int8: Int8 = Field(default=Int8(), description="How int8 files are made (with dtype int8 or --int8).")
    bundle: Literal["files", "shared"] = Field(default="files", description=(
        "'files': one file per variant; 'shared': the device format's variants as the methods (signatures) of "
        "one file that stores the anchors' weights once (restnet.package.bundle)."))

    @property
    def model_ram_mb(self) -> float:
        return self.ram_mb * self.model_ram_share

    def with_overrides(self, update: Mapping[str, object]) -> Profile:
        """This profile with some fields replaced, each named by its dotted path (``budgets.band``), and
        validated again as a whole: an override obeys the rules a YAML file does, so the pack never sees a
        combination a profile could not state (pydantic's ValidationError otherwise)."""
        data = self.model_dump()
        for path, value in update.items():
            *sections, name = path.split(".")
            node = data
            for s in sections:
                if node.get(s) is None:  # an absent optional section (latency_estimate) starts empty
                    node[s] = {}
                node = node[s]
            node[name] = value
        return Profile.model_validate(data)


def profile_field(path: str) -> FieldInfo:
    """The field at a dotted path (``budgets.band``): its type, constraints and description."""
    model: type[BaseModel] = Profile
    *sections, name = path.split(".")
    for s in sections:
        model = _unwrap(model.model_fields[s].annotation)[0]
    return model.model_fields[name]


def field_type(info: FieldInfo) -> tuple[object, list]:
    """A field's type without ``| None``, and its constraints (annotated_types ``Ge``, ``Lt``, ...)."""
    ann, meta = _unwrap(info.annotation)
    return ann, [*info.metadata, *meta]


def _unwrap(ann) -> tuple[object, list]:
    if get_origin(ann) in (Union, UnionType):
        ann = next(a for a in get_args(ann) if a is not type(None))
    if get_origin(ann) is Annotated:
        ann, *meta = get_args(ann)
        return ann, meta
    return ann, []


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
            close = difflib.get_close_matches(str(name_or_path), available(), n=3, cutoff=0.6)
            hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
            raise ProfileError(f"no profile named {name_or_path!r} in {', '.join(map(str, profile_dirs()))}; "
                               f"{hint}available: {', '.join(available())} (or give a path to a .yaml file, or "
                               f"add a folder to ${PROFILES_ENV})")
        path = found
    if not path.is_file():
        raise ProfileError(f"{path}: no such profile file")
    raw, root = _read_yaml(path)
    try:
        return Profile.model_validate(raw)
    except ValidationError as err:
        raise ProfileError("\n".join(_field_error(path, root, e) for e in err.errors())) from None


def _read_yaml(path: Path) -> tuple[dict, yaml.Node]:
    """(parsed mapping, its node tree for line numbers); a syntax error names the file, line and column."""
    try:
        text = path.read_text(encoding="utf-8")
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except UnicodeDecodeError as err:
        raise ProfileError(f"{path}: not UTF-8 text (byte {err.start}); save the profile as UTF-8 YAML") from None
    except yaml.MarkedYAMLError as err:
        mark, start = err.problem_mark or err.context_mark, err.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = err.problem or err.context or "syntax error"
        if start is not None and start is not mark and err.context:  # where the unfinished construct began
            construct = re.sub(r"^while (parsing|scanning) (an? )?", "", err.context)
            what += f" (the {construct} started at line {start.line + 1}, column {start.column + 1})"
        raise ProfileError(f"{path}{where}: not valid YAML: {what}; fix the syntax there "
                           "(compare with a shipped profile: `restnet profiles`)") from None
    except (yaml.YAMLError, RecursionError, ValueError) as err:
        raise ProfileError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ProfileError(f"{path}: expected a mapping of fields at the top level, got {type(raw).__name__}; "
                           "a profile is `field: value` lines (compare with a shipped profile)")
    return raw, root


def _field_error(path: Path, root: yaml.Node, e: dict) -> str:
    """One line per invalid field: file, line, field, what is wrong and, for a typo, the closest names."""
    loc = e["loc"]
    if e["type"] == "missing":  # no line of its own: the line of the mapping it belongs in, if nested
        line = _line_of(root, loc[:-1]) if len(loc) > 1 else None
    else:
        line = _line_of(root, loc)
    at = f"{path}, line {line}" if line else str(path)
    msg = e["msg"]
    if e["type"] == "extra_forbidden":
        known = _known_fields(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), known, n=2, cutoff=0.6)
        msg = ("unknown field (not allowed)" + (f"; did you mean {' or '.join(map(repr, close))}?" if close else "")
               + (f" Known fields here: {', '.join(known)}" if known else ""))
    elif e["type"] == "missing":
        msg = "missing: this field is required"
    return f"{at}: field '{_where(loc)}': {msg}"


def _line_of(node: yaml.Node | None, loc: tuple) -> int | None:
    """The 1-based line of the deepest key on ``loc`` (the parent's line for a missing field)."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == part:
                    line, child = k.start_mark.line + 1, v
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            child = node.value[part]
            line = child.start_mark.line + 1
        if child is None:
            return line
        node = child
    return line


def _known_fields(loc: tuple) -> list[str]:
    """The field names a mapping at ``loc`` may hold (what a typo is matched against)."""
    model = {(): Profile, ("hardware",): Hardware, ("budgets",): Budgets,
             ("latency_estimate",): LatencyEstimate}.get(tuple(loc))
    return list(model.model_fields) if model else []


def available() -> list[str]:
    return sorted({p.stem for d in profile_dirs() for p in d.glob("*.yaml")})


def field_table() -> str:
    """Every profile field as a Markdown table, made from the profile's JSON schema: docs/profiles.md holds
    it (scripts/profile_fields.py writes it there, tests/test_profiles.py keeps it equal), so the fields a
    reader is told of are the ones validated, with their types, bounds, defaults and descriptions."""
    schema = Profile.model_json_schema()
    rows = ["| field | type | default | what it is |", "|---|---|---|---|", *_field_rows(schema, schema, "")]
    return "\n".join(rows) + "\n"


def _field_rows(schema: dict, model: dict, prefix: str) -> list[str]:
    out = []
    for name, prop in model["properties"].items():
        ref = next((p["$ref"] for p in (prop, *prop.get("anyOf", ())) if "$ref" in p), None)
        section = schema["$defs"][ref.rpartition("/")[2]] if ref else None
        default = "required" if name in model.get("required", ()) else _default(prop.get("default"))
        what = (prop.get("description") or (section or {}).get("description", "")).replace("|", "\\|")
        kind = "section" if section else _type(prop)
        out.append(f"| `{prefix}{name}` | {kind} | {default} | {what} |")
        if section:
            out += _field_rows(schema, section, f"{prefix}{name}.")
    return out


def _type(prop: dict) -> str:
    if "anyOf" in prop:
        return " or ".join(_type(p) for p in prop["anyOf"] if p.get("type") != "null")
    if "enum" in prop:
        return " \\| ".join(f"`{v}`" for v in prop["enum"])
    if prop.get("type") == "array":
        return f"list of {_type(prop['items'])}"
    kind = prop["type"]
    low = ("[", prop["minimum"]) if "minimum" in prop else \
        ("(", prop["exclusiveMinimum"]) if "exclusiveMinimum" in prop else None
    high = ("]", prop["maximum"]) if "maximum" in prop else \
        (")", prop["exclusiveMaximum"]) if "exclusiveMaximum" in prop else None
    if low and high:
        return f"{kind} in {low[0]}{low[1]}, {high[1]}{high[0]}"
    if low:
        return f"{kind} {'≥' if low[0] == '[' else '>'} {low[1]}"
    if high:
        return f"{kind} {'≤' if high[0] == ']' else '<'} {high[1]}"
    return kind


def _default(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, dict):
        return "its fields' defaults"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, list):
        return f"`[{', '.join(map(str, value))}]`"
    return f"`{value:g}`" if isinstance(value, float) else f"`{value}`"

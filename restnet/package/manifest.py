"""The package manifest: the contract between restnet and firmware teams.

One pydantic model is the single source of truth: the JSON Schema shipped in
every package (``manifest.schema.json``) and the copy the torch-free toolkit
validates against (``toolkit/manifest.schema.json``) are both generated from
it, and a test keeps the committed copy identical. Change a field and the
schema changes with it; bump ``SCHEMA_VERSION`` and say so in
``docs/package-format.md``. The rule readers rely on (toolkit.package): a minor
only adds optional fields, whose absence keeps the old meaning and which a
reader of an older minor may ignore without misreading anything it knows;
anything else (a renamed, removed or retyped field, a new value in an existing
field, other units) is a new major.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from restnet.export import backends, literal, names
from restnet.export.base import AGREEMENT_FLAG, TOLERANCE, percent, scientific
from toolkit.package import VERSION_KEY

if TYPE_CHECKING:
    from restnet.profiles import Profile

SCHEMA_VERSION = "1.7"
FLOPS_CONVENTION = ("fvcore multiply-adds (1 MAC = 1 FLOP), batch 1, at the package's input resolution; "
                    "convolutions, linear layers and matmuls counted, element-wise ops, norms and "
                    "activations not")
RUNTIME_OVERHEAD_MB = 8.0  # what a runtime needs besides weights and activations, in the peak-RAM estimate
RAM_METHOD = ("estimate: size of the weights file + 2 x the largest activation tensor (float32, batch 1) "
              f"+ {RUNTIME_OVERHEAD_MB:g} MB runtime overhead; restnet-bench measures the real peak RSS on the device")

# A JSON number written as it was given (an int stays an int): the schema says "number" either way.
Number = Annotated[int | float, WithJsonSchema({"type": "number"})]
# Values from the table of export formats (restnet.export.FORMATS), in its order.
_Format = literal(names())
_SharedFormat = literal(names(lambda f: f.export_many))
_Backend = literal(backends())


class _Model(BaseModel):
    # NaN and infinity are not JSON: a firmware parser would reject the whole manifest, so no field may hold them.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ProfileInfo(_Model):
    name: str
    description: str
    backend: _Backend
    threads: int = Field(ge=1)
    dtype: Literal["fp32", "int8"]
    metric: Literal["params", "flops", "latency"]
    unit: str = Field(description="Unit of budgets and variant costs: params, MACs or ms.")
    budgets: list[float]
    band: float = Field(ge=0, lt=1, description="Selection band (0 = Algorithm 1 as written).")
    window: float = Field(default=0.0, ge=0, le=1, description="1.1: selection window (0 = off), see "
                                                               "restnet.selection.")
    ram_budget_mb: float
    storage_mb: Number
    compute_gmacs: float | None = None
    latency_target_ms: float | None = None
    budget_mode: Literal["ladder", "between", "values"] | None = Field(
        default=None, description="1.2: how the budgets were made; 'ladder' = from the small anchor up to the "
                                  "device's binding limit.")
    limits: dict[str, float] | None = Field(
        default=None, description="1.2: the device limits the ladder was planned on: latency (ms), compute "
                                  "(MACs), ram (MB, the model's share), storage (MB).")
    binding_limit: Literal["latency", "compute", "ram", "storage", "anchor"] | None = Field(
        default=None, description="1.2: the limit that ends the ladder ('anchor': the large anchor fits them all).")
    bundle: Literal["files", "shared"] | None = Field(
        default=None, description="1.3: 'files' = one file per variant and format; 'shared' = the device "
                                  "format's variants are methods of one file (see the manifest's 'bundles').")
    cost_source: str | None = Field(
        default=None, description="1.7: where the budgets' and variants' costs come from, in words: 'computed' "
                                  "(params, MACs); for latency 'measured (host, ...)' with the parts' spread, "
                                  "'estimated (...)' when the host was too busy to time them (MACs x a measured "
                                  "ms per MAC) or scaled for another device, or 'predicted (device table ...)'.")

    @classmethod
    def of(cls, profile: Profile, **pack: object) -> ProfileInfo:
        """The record of ``profile`` (with the command line's overrides): every field here named like a
        setting of the profile or of its budgets section is read from there, so recording a profile field is
        its line in this class; ``pack`` holds what the pack decided (the budgets, how they were made, the
        layout written, ...) and wins where both name a field (``bundle``: the layout that was written)."""
        settings = {**profile.budgets.model_dump(), **profile.model_dump()}
        own = {k: v for k, v in settings.items() if k in cls.model_fields and not isinstance(v, dict)}
        return cls(**{**own, **pack})


class TrainedAlike(_Model):
    accuracy: float = Field(ge=0, le=1, description="Top-1 on the split named by task.accuracy_split of the "
                                                    "anchor given the stitched members' training.")
    after_block: int = Field(ge=0, description="The anchor was cut after this block, stitched to itself there "
                                               "and trained with the members' settings on their images.")


class CurvePoint(_Model):
    epochs: int = Field(ge=1)
    val_accuracy: float = Field(ge=0, le=1)


class Adaptation(_Model):
    stopped: str = Field(description="Why adaptation ended: converged (a round at the smaller learning rate bought "
                                     "less than the minimum gain), epoch limit or time limit.")
    curve: list[CurvePoint] = Field(description="Validation top-1 after each round; the best round's weights "
                                                "are the anchor's.")


class AnchorInfo(_Model):
    name: str = Field(description="timm model name.")
    weights: str = Field(description="Where the weights came from and how they were adapted to the task.")
    accuracy: float = Field(ge=0, le=1, description="Top-1 on the split named by task.accuracy_split.")
    params: int
    flops: int
    blocks: int
    trained_alike: TrainedAlike | None = Field(
        default=None, description="1.6: the control a member is measured against: what the members' extra "
                                  "training alone gives this anchor (its gain over `accuracy`). A stitched member "
                                  "that the small anchor's control beats on the validation images is not shipped.")
    adaptation: Adaptation | None = Field(
        default=None, description="1.6, anchors adapted until converged: the convergence curve.")


class TaskInfo(_Model):
    dataset: str
    num_classes: int = Field(ge=2)
    classes: list[str]
    labels_file: str = Field(description="One class name per line, line k = logit k.")
    val_size: int = Field(description="Validation images (carved from the training split for built-in data): "
                                      "every decision and every export check uses them.")
    accuracy_split: Literal["test", "val"] = Field(
        default="val", description="1.1: the split behind every variant's and anchor's 'accuracy': 'test' = the "
                                   "data set's official test split, never seen in training or decisions.")
    test_size: int | None = Field(default=None, description="1.1: images in the test split, when there is one.")


class Resize(_Model):
    size: list[int] = Field(description="[height, width] the image is resized to.")
    interpolation: Literal["bilinear", "bicubic", "nearest"]
    antialias: bool = Field(description="Antialias when downscaling.")
    grayscale: str = Field(description="How a one-channel image becomes three channels.")
    output: Literal["float32", "uint8"] = Field(
        default="float32", description="1.4: 'uint8' = the uint8 image is resized as uint8 (Pillow's resampling, "
                                       "the reference implementation), then scaled; 'float32' (before 1.4) = the "
                                       "pixels are scaled first and resized as floats.")


class InputInfo(_Model):
    shape: list[int] = Field(description="Input tensor shape, batch first.")
    layout: Literal["NCHW", "NHWC"]
    dtype: Literal["float32"]
    color: Literal["RGB"]
    scale: float = Field(description="Pixels are multiplied by this first (uint8 -> [0, 1]).")
    mean: list[float] = Field(description="Per channel, subtracted after scaling.")
    std: list[float] = Field(description="Per channel, divided by after subtracting the mean.")
    resize: Resize


class OutputInfo(_Model):
    shape: list[int]
    kind: Literal["logits"] = "logits"
    note: str = "unnormalised class scores; apply softmax for probabilities"


class FileEntry(_Model):
    format: _Format
    path: str = Field(description="Relative to the package root; never absolute, never '..'.")
    size: int = Field(ge=0)
    sha256: str = Field(pattern="^[0-9a-f]{64}$")
    runtime: str = Field(description="What runs the file and the version it was verified with.")
    input_layout: Literal["NCHW", "NHWC"]
    max_abs_diff: float = Field(description="Max |logit difference| vs eager torch over the validation split.")
    max_abs_logit: float = Field(description="Max |eager logit| over the same inputs.")
    scaled_diff: float = Field(description=(
        f"max_abs_diff / max(1, max_abs_logit): the fp32 export gate is <= {scientific(TOLERANCE)} (int8 files are "
        "not gated on it)."))
    top1_agreement: float = Field(ge=0, le=1, description="Share of validation images with the same top-1 as the "
                                                          "fp32 eager model.")
    dtype: Literal["fp32", "int8"] = "fp32"
    accuracy: float | None = Field(default=None, description="int8 only: this file's own top-1 on the validation "
                                                             "split (the same images as top1_agreement).")
    check_agreement: float | None = Field(default=None, ge=0, le=1, description=(
        "1.5, int8 only: share with the same top-1 as fp32 over every check image (check_images): the "
        "validation split and the training images no stage of the pack used (none for an ImageFolder without "
        "a train_size). 'flagged' is decided on it."))
    check_images: int | None = Field(default=None, ge=1, description="1.5, int8 only: how many images "
                                                                      "check_agreement is over.")
    recipe: str | None = Field(default=None, description=(
        "1.5, int8 only: how the file was quantised (calibration, observer, weights, parts left float, "
        "fine-tuning), in words."))
    flagged: bool | None = Field(default=None, description=(
        f"int8 only: top-1 agreement with fp32 below {percent(AGREEMENT_FLAG)}; from 1.5 over check_images "
        "(check_agreement), before it over the validation split (top1_agreement)."))
    method: str | None = Field(default=None, description=(
        "1.3: the method (.pte) or signature (.tflite) that is this variant inside a file shared by several "
        "variants (see 'bundles'); absent: the file is this variant alone (.pte method 'forward', the "
        ".tflite's only signature)."))


class Latency(_Model):
    ms: float
    source: Literal["measured", "estimated", "predicted"] = Field(
        description="'estimated' on a host figure: the packing host was too busy to time the file (another job "
                    "held the CPU), and 'method' says how the figure was estimated instead.")
    where: str = Field(description="'host' or the device profile name.")
    threads: int
    runtime: str
    method: str
    spread: float | None = Field(default=None, ge=0, description=(
        "1.7, host figures: +- fraction the timed bursts disagree by (half their inter-quartile range / ms); "
        "two figures closer than their spreads are the same speed as far as this host can tell."))


class StitchInfo(_Model):
    type: str = Field(description="Stitching layer kind, e.g. cnn->cnn conv3x3.")
    kernel_size: int
    in_shape: list[int]
    out_shape: list[int]
    params: int


class PartInfo(_Model):
    anchor: str
    blocks: list[int] = Field(description="[first, last] block indices kept (0-based, inclusive).")


class Fits(_Model):
    ram: bool
    compute: bool | None = None
    latency: bool | None = None


class VariantLimits(_Model):
    """1.2: where a variant stands against the device's limits."""

    binding: Literal["latency", "compute", "ram", "storage", "anchor"] | None = Field(
        description="The limit that bound this member's budget (null for an anchor: it has no budget).")
    headroom: dict[str, float | None] = Field(
        description="Per limit (latency, compute, ram, storage): 1 - figure / limit; negative = over, null = "
                    "no figure (e.g. no device latency source) or no limit.")


class Variant(_Model):
    id: str = Field(description="Self-describing and unique: <profile>_<metric>@<cost>_top1@<accuracy>.")
    kind: Literal["stitched", "anchor"]
    front: PartInfo
    back: PartInfo | None = None
    stitch: StitchInfo | None = None
    cka: float | None = None
    cost: float = Field(description="In the profile's metric and unit.")
    params: int
    flops: int
    trainable_params: int
    accuracy: float = Field(ge=0, le=1)
    latency: list[Latency] = Field(description="Host-measured first, then the device figure.")
    peak_ram_mb: float
    fits: Fits
    files: list[FileEntry]
    input: InputInfo | None = Field(default=None, description="Set only when it differs from the package input.")
    limits: VariantLimits | None = Field(default=None, description="1.2: set when the budgets are a ladder.")


class Probe(_Model):
    """One part as its own program, for per-block latency measurement on the device."""

    name: str = Field(description="front.stem, front.blockNN, front.head, back.*, or stitch.<src>-<dst>.")
    role: Literal["front", "back", "stitch"]
    part: Literal["stem", "block", "head", "stitch"]
    index: int | None = None
    in_shape: list[int]
    format: str
    path: str = Field(description="Relative to the package root. Probes that are the same program but for "
                                  "their weights (a stage's repeated blocks) share one file, and so its path.")
    size: int = Field(ge=0)
    sha256: str = Field(pattern="^[0-9a-f]{64}$")
    host_ms: float = Field(description="Latency measured on the packing host (from 1.7 the low quantile of "
                                       "the bursts no other job starved, an upper bound when the host was busy).")


class SharedFile(_Model):
    """1.3: one file holding several variants, one method (.pte) or signature (.tflite) each; the anchors'
    weights are stored in it once."""

    format: _SharedFormat
    path: str = Field(description="Relative to the package root; never absolute, never '..'.")
    size: int = Field(ge=0)
    sha256: str = Field(pattern="^[0-9a-f]{64}$")
    methods: dict[str, str] = Field(description="Method (signature) name -> variant id, cheapest first.")


class FamilyInfo(_Model):
    """1.1: is the family a ladder (restnet.package.family)."""

    members: int
    spearman_rho: float = Field(description="Spearman rank correlation of cost and accuracy over all variants.")
    rho_p: float
    largest_gap: float = Field(description="Largest cost gap between consecutive variants / the anchors' cost "
                                           "range.")
    gap_between: list[str] = Field(description="The two variant ids around that gap.")
    targets: dict[str, float]


class Manifest(_Model):
    schema_version: str = Field(pattern=r"^\d+\.\d+$")
    created: str = Field(description="UTC, ISO 8601.")
    restnet_version: str
    profile: ProfileInfo
    task: TaskInfo
    anchors: dict[str, AnchorInfo] = Field(description="'front' and 'back'.")
    input: InputInfo
    output: OutputInfo
    flops_convention: str = FLOPS_CONVENTION
    peak_ram_method: str = RAM_METHOD
    latency_source: Literal["measured", "estimated", "predicted", "unavailable"] = Field(
        description="Where the device latencies come from (also on each figure); 'unavailable': only the "
                    "host figure is given until restnet-bench measures the device.")
    variants: list[Variant] = Field(description="Sorted by cost, cheapest first.")
    family: FamilyInfo | None = Field(default=None, description="1.1: ladder statistics (3+ variants).")
    probes: list[Probe] | None = Field(default=None, description="Per-block programs (restnet-pack --probes).")
    bundles: list[SharedFile] | None = Field(default=None, description=(
        "1.3: files shared by several variants (restnet-pack --bundle shared); each variant's entry for it "
        "names its 'method'."))
    sequence: int | None = Field(default=None, ge=1, le=2 ** 53, description=(
        "1.6: the package's release number for its profile, higher than every earlier package's; a device "
        "refuses a package lower than the one it has installed (rollback)."))
    key_ids: list[Annotated[str, Field(pattern="^[0-9a-f]{16}$")]] | None = Field(default=None, description=(
        "1.6: the keys that signed this manifest (manifest.sig): sha256 of each raw Ed25519 public key, first "
        "16 hex digits."))


def json_schema() -> dict:
    schema = Manifest.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://restnet.dev/schemas/manifest-{SCHEMA_VERSION}.json"
    schema["title"] = f"restnet package manifest {SCHEMA_VERSION}"
    schema[VERSION_KEY] = SCHEMA_VERSION  # what the toolkit reads its own version from
    return schema


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"

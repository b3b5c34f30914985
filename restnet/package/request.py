"""What one `restnet-pack` run is asked to do, checked before any heavy work."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from restnet.export import backends
from restnet.export.int8 import routes
from restnet.export.int8_finetune import Finetune
from restnet.export.int8_recipe import Recipe
from restnet.profiles import Profile, ProfileError

BACKEND_FORMAT = backends()  # a profile's backend -> the device format (Format.backends)
# Whole stitched programs timed beside the per-block probes (restnet.package.probes), by default: what the latency
# prediction's two corrections are fitted on (restnet.package.latency).
CALIBRATION_POINTS = 8


@dataclass
class PackRequest:
    """``profile`` is the device profile with the command line's overrides already applied
    (restnet.commands.pack), and validated again: every profile setting a stage reads, it reads there,
    so a new profile field reaches the pack without passing through this class. The properties name the
    budget settings the stages read most. The fields are what is not a profile setting: this run's
    output, formats, host threads and extras."""

    profile: Profile
    out: Path
    formats: tuple[str, ...]  # the backend's format first
    threads: int = 1  # host measurement threads
    include_anchors: bool = True
    keep_dominated: bool = False  # ship stitched members a cheaper member beats on val (restnet.package.dominance)
    train_overrides: dict = field(default_factory=dict)
    probes: bool = False  # also ship per-block programs (restnet-bench --blocks)
    calibration: int = CALIBRATION_POINTS  # whole stitched programs shipped with the probes
    int8: bool = False  # also ship int8 files (PT2E) with their agreement with fp32
    sequence: int | None = None  # the package's sequence; None = one more than the package in ``out`` (build.pack)
    sign_keys: tuple = ()  # restnet.package.signing.SigningKey: each signs manifest.json into manifest.sig

    @property
    def metric(self) -> str:
        return self.profile.budgets.metric

    @property
    def budgets(self) -> tuple[float, ...]:
        """Absolute budgets, in the metric's unit; empty = a ladder or ``between`` budgets."""
        return tuple(self.profile.budgets.values or ())

    @property
    def between(self) -> int:
        return self.profile.budgets.between or 0

    @property
    def ladder(self) -> int:
        """> 0: this many budgets up to the device's binding limit (restnet.package.limits)."""
        return self.profile.budgets.ladder or 0

    @property
    def band(self) -> float:
        return self.profile.budgets.band

    @property
    def window(self) -> float:
        return self.profile.budgets.window

    @property
    def bundle(self) -> str:
        """'files', or 'shared': the device format's variants as methods of one file (restnet.package.bundle)."""
        return self.profile.bundle

    @property
    def latency_table(self) -> Path | None:
        """A device table from restnet-bench."""
        return Path(self.profile.latency_table) if self.profile.latency_table else None

    @property
    def latency_scale(self) -> float | None:
        """None when latency is measured here; the profile's factor when it is estimated."""
        p = self.profile
        if p.is_host or self.latency_table is not None:
            return None
        return p.latency_estimate.host_scale if p.latency_estimate else None

    @property
    def int8_recipe(self) -> Recipe:
        """The profile's ``int8`` settings on top of the measured default recipe."""
        s = self.profile.int8
        return Recipe(calibration=s.calibration, fp32=tuple(dict.fromkeys(s.float_parts)),
                      finetune=Finetune(images=s.finetune_images, epochs=s.finetune_epochs,
                                        loss=s.finetune_loss))

    @property
    def int8_formats(self) -> tuple[str, ...]:
        """The requested formats that have an int8 route (restnet.export.int8), when int8 is on."""
        return tuple(f for f in self.formats if f in routes()) if self.int8 else ()

    def check(self) -> None:
        """Refuse a request that cannot be met, naming the profile and what to change."""
        p = self.profile
        if self.int8 and not self.int8_formats:
            raise ProfileError(f"profile {p.name}: int8 is available for the formats {', '.join(routes())}, "
                               f"not for {', '.join(self.formats)}; use --no-int8 or another format")
        if self.metric == "latency" and not p.is_host and p.latency_estimate is None and self.latency_table is None:
            raise ProfileError(f"profile {p.name}: cost metric 'latency' needs a measured table, 'is_host: true' "
                               "or 'latency_estimate: {host_scale, source}'; or use --metric params|flops")

"""Fair accounting in every pack: each anchor trained alike to the members (restnet.training.control).

The pack prints both figures per anchor, records them in the manifest and the
report, warns when an anchor gains more than GAIN_WARNING from the members'
training alone (the family's edge over it may then be training, not
stitching), and lets the small anchor trained alike drop the stitched members
it beats on the validation images, by the same rule as a cheaper member
(restnet.package.dominance).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from restnet.training.control import GAIN_WARNING


@dataclass(frozen=True)
class AnchorControl:
    """One anchor as shipped and trained alike to the members."""

    role: str
    name: str
    after_block: int  # the control is the anchor cut after this block and stitched to itself
    cost: float  # the anchor's cost: the control is the anchor, only trained more
    accuracy: float  # report split, the anchor as shipped
    trained_alike: float  # report split, the control
    val_correct: np.ndarray  # the control's per-image correctness on the validation images

    @property
    def gain(self) -> float:
        return self.trained_alike - self.accuracy

    @property
    def label(self) -> str:
        return f"{self.name} trained alike"


def describe(c: AnchorControl, split: str) -> str:
    return (f"control: {c.label} (stitched to itself after block {c.after_block}, the members' training) "
            f"{c.trained_alike:.2%} {split} top-1, {c.accuracy:.2%} as shipped ({100 * c.gain:+.2f} points)")


def warning(controls: Iterable[AnchorControl]) -> str | None:
    """The one-line warning when an anchor gains more than GAIN_WARNING from the members' training."""
    gains = [c for c in controls if c.gain > GAIN_WARNING]
    if not gains:
        return None
    named = ", ".join(f"{c.name} {100 * c.gain:+.2f}" for c in gains)
    return (f"the members' training alone lifts {named} points (> {100 * GAIN_WARNING:.1f}): the family's edge "
            "over the anchors may be training, not stitching: adapt the anchors until converged "
            "(--adapt-epochs auto, or restnet adapt once and --front-weights / --back-weights)")


def small(controls: dict[str, AnchorControl]) -> AnchorControl:
    """The cheaper anchor's control: the one a member must beat to be worth shipping."""
    return min(controls.values(), key=lambda c: (c.cost, c.role == "front"))

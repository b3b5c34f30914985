"""Selection rules beyond Algorithm 1, one class each, passed to restnet.selection as one list.

Algorithm 1 accepts a point when its cost fits the budget. A rule narrows that: per budget of the
family it may raise the lowest accepted cost (``lowest``) or lower the highest (``highest``), and it
may forbid points whatever the budget (``allowed``). Rules see the whole family's budgets, sorted,
and ``low``, the cheaper anchor's cost, because a rule such as the window places each budget's slice
by its neighbours.

Why rules are objects: a rule that a profile sets is then its class and one ``register`` line, and
``constraints_from`` turns any settings (a pack request, a profile's budgets, the method verbs'
options) into the list, so no caller names a rule by hand.

Why the rules that exist: early stitch points have the highest CKA (measured: lite2[:2]->lite0[2:] at
CKA 0.995 on Fashion-MNIST), so every budget above their cost selects them and the family crowds at
the cheap end. ``Band`` and ``Window`` mask points too cheap for the budget; ``DeviceLimits`` masks
points that break a device's limit (restnet.package.limits).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch


class Constraint:
    """One rule on the stitch points a budget may take. The defaults narrow nothing."""

    setting: ClassVar[str] = ""  # the profile / request setting that turns it on ("" = none; set by register)

    def lowest(self, budgets: list[float], low: float | None) -> list[float]:
        """Per budget of ``budgets`` (sorted), the lowest cost it accepts."""
        return [0.0] * len(budgets)

    def highest(self, budgets: list[float], low: float | None) -> list[float]:
        """Per budget of ``budgets`` (sorted), the highest cost it accepts (Algorithm 1: the budget)."""
        return list(budgets)

    def allowed(self, shape: torch.Size) -> torch.Tensor | None:
        """The points any budget may take, as a bool matrix of the CKA matrix's ``shape`` (None: all)."""
        return None


@dataclass(frozen=True)
class Setting(Constraint):
    """A rule turned on by one number, a setting of the profile's ``budgets`` or of the request."""

    value: float

    def __post_init__(self) -> None:  # a rule checks its value here, so a bad setting fails when it is read
        pass

    def __str__(self) -> str:  # as log lines and the profile listing name it: "band 0.5"
        return f"{self.setting} {self.value:g}"


RULES: dict[str, type[Setting]] = {}  # setting name -> the rule it turns on, in the order log lines list them


def register(setting: str) -> Callable[[type[Setting]], type[Setting]]:
    """Class decorator: ``setting`` turns the rule on, as ``cls(value)``, wherever constraints_from reads it."""
    def add(cls: type[Setting]) -> type[Setting]:
        if setting in RULES:
            raise ValueError(f"selection rule {setting!r} is registered twice")
        cls.setting = setting
        RULES[setting] = cls
        return cls

    return add


def _setting(sources: Sequence[object], name: str) -> object:
    """The value of ``name`` in the first of ``sources`` (objects or mappings) that has it; None if none does."""
    for s in sources:
        if isinstance(s, Mapping):
            if name in s:
                return s[name]
        elif hasattr(s, name):
            return getattr(s, name)
    return None


def constraints_from(*settings: object) -> list[Setting]:
    """The registered rules that ``settings`` turn on, in registration order. Each rule's value comes from the
    first of ``settings`` (objects or mappings, most specific first: the request, then the profile's budgets)
    that has its setting; 0 or None leaves the rule off, as the profiles' defaults do."""
    return [cls(v) for name, cls in RULES.items() if (v := _setting(settings, name))]


@dataclass(frozen=True)
class Span:
    """The costs one budget accepts: lowest <= cost <= highest."""

    lowest: float
    highest: float


def spans(constraints: Sequence[Constraint], budgets: Sequence[float], low: float | None = None) -> list[Span]:
    """Per budget of sorted(``budgets``), the costs every rule accepts (Algorithm 1 alone: 0..budget)."""
    bs = sorted(budgets)
    lo, hi = [0.0] * len(bs), list(bs)
    for c in constraints:
        lo = [max(a, b) for a, b in zip(lo, c.lowest(bs, low))]
        hi = [min(a, b) for a, b in zip(hi, c.highest(bs, low))]
    return [Span(a, b) for a, b in zip(lo, hi)]


def span_of(constraints: Sequence[Constraint], budget: float, among: Sequence[float] | None = None,
            low: float | None = None) -> Span:
    """The costs ``budget`` accepts as one of the budgets ``among`` (default: alone)."""
    family = list(among) if among is not None else [budget]
    return dict(zip(sorted(family), spans(constraints, family, low)))[budget]


def masked(constraints: Sequence[Constraint], matrix: torch.Tensor) -> torch.Tensor:
    """The CKA matrix with the points some rule forbids set to NaN (Algorithm 1 skips them)."""
    for c in constraints:
        if (ok := c.allowed(matrix.shape)) is not None:
            matrix = torch.where(ok, matrix.to(torch.float64), torch.tensor(float("nan"), dtype=torch.float64))
    return matrix


@register("band")
class Band(Setting):
    """A budget only accepts points costing >= value x budget (0 = Algorithm 1 as written)."""

    def __post_init__(self):
        if not 0.0 <= self.value < 1.0:
            raise ValueError(f"band must be in [0, 1), got {self.value}")

    def lowest(self, budgets: list[float], low: float | None) -> list[float]:
        return [self.value * b for b in budgets]


@register("window")
class Window(Setting):
    """A budget only accepts points costing >= budget - value x (distance to the next lower budget, or to
    ``low`` for the lowest; 0 = off). Each member then lies in its own slice of the cost range, so with
    budgets evenly spaced between the anchors no two consecutive members are more than (1 + value)
    spacings apart, whatever CKA prefers."""

    def __post_init__(self):
        if not 0.0 <= self.value <= 1.0:
            raise ValueError(f"window must be in [0, 1], got {self.value}")

    def lowest(self, budgets: list[float], low: float | None) -> list[float]:
        if not self.value:
            return [0.0] * len(budgets)
        prev = [low] + budgets[:-1]
        if low is None:  # no anchor given: the lowest budget's slice is as wide as the next one's
            prev[0] = budgets[0] - (budgets[1] - budgets[0]) if len(budgets) > 1 else 0.0
        return [b - self.value * (b - p) for b, p in zip(budgets, prev)]


@dataclass(frozen=True)
class Floor(Constraint):
    """Every budget only accepts points costing >= value (a fixed lower bound, set by no profile)."""

    value: float

    def lowest(self, budgets: list[float], low: float | None) -> list[float]:
        return [self.value] * len(budgets)


@dataclass(frozen=True, eq=False)
class DeviceLimits(Constraint):
    """Only the points that fit the device, whatever the budget (``mask``: True where a point breaks no
    limit; restnet.package.limits plans it)."""

    mask: torch.Tensor

    def allowed(self, shape: torch.Size) -> torch.Tensor | None:
        return self.mask

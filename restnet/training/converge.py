"""When an anchor's adaptation has converged: the plateau rule, and its rounds.

A fixed number of epochs is wrong both ways: on the bundled CIFAR-10 one
epoch leaves the anchors far from converged, and on a 2,000-image folder one
epoch is a few dozen steps. Adapting "until converged" trains in rounds of
whole epochs (at least ``round_steps`` optimiser steps each, so small data
gets the steps it needs), measures validation top-1 after each, and drops the
learning rate tenfold the first time a round buys less than ``min_gain``; the
next such round ends it. The best round's weights are kept. Epoch and time
limits bound it; the curve says where it stopped and why.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

MAX_ROUNDS = 20  # the default bound: 20 epochs of the bundled CIFAR-10's 30,000 images
CONTINUE, DROP = "continue", "drop lr"
CONVERGED, EPOCH_LIMIT, TIME_LIMIT = "converged", "epoch limit", "time limit"


def epochs_per_round(steps_per_epoch: int, round_steps: int) -> int:
    """Whole epochs that make at least ``round_steps`` optimiser steps."""
    return max(1, math.ceil(round_steps / max(1, steps_per_epoch)))


@dataclass
class Plateau:
    """Feed it each round's validation top-1; it says what to do next."""

    min_gain: float  # a round that buys less (fraction, 0.003 = 0.3 points) is a plateau
    max_epochs: int
    max_seconds: float | None = None
    lr_drops: int = 1  # plateaus met by a tenfold smaller learning rate before stopping
    best: float = -math.inf
    best_round: int = -1
    dropped: int = 0
    rounds: int = 0
    gains: list[float | None] = field(default_factory=list)

    def update(self, accuracy: float, epochs_done: int, seconds: float, next_round_epochs: int = 1) -> str:
        """CONTINUE, DROP (continue at a tenfold smaller learning rate), or why to stop."""
        gain = accuracy - self.best if self.rounds else math.inf
        self.gains.append(None if math.isinf(gain) else gain)
        if accuracy > self.best:
            self.best, self.best_round = accuracy, self.rounds
        self.rounds += 1
        if gain < self.min_gain:
            if self.dropped >= self.lr_drops:
                return CONVERGED
            self.dropped += 1
            verdict = DROP
        else:
            verdict = CONTINUE
        if epochs_done + next_round_epochs > self.max_epochs:
            return EPOCH_LIMIT
        if self.max_seconds is not None and seconds >= self.max_seconds:
            return TIME_LIMIT
        return verdict

    def state(self) -> dict:
        return {"best": self.best, "best_round": self.best_round, "dropped": self.dropped, "rounds": self.rounds,
                "gains": self.gains}

    def restore(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v)


def describe_curve(curve: list[dict], stopped: str | None) -> str:
    """One line: validation top-1 after each round, and why it stopped."""
    points = ", ".join(f"{c['epochs']}: {c['val_accuracy']:.2%}" for c in curve)
    last = curve[-1]["val_accuracy"] - max(c["val_accuracy"] for c in curve[:-1]) if len(curve) > 1 else None
    tail = "" if last is None else f"; the last round {100 * last:+.2f} points over the best before it"
    return f"val top-1 by epochs {points} ({stopped}{tail}; the best round kept)"

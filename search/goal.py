"""What a study optimises: one reported metric, maximised or minimised. The sign lives here.

A study file names it (`[objective] metric = "val_loss"`, `direction = "minimize"`; the default
is the built-in objective's validation accuracy, maximised), and the study records both in its
identity, so every reader derives the same `Goal` from the store (`Goal.of`).

Everything that compares trials works on *scores*, where higher is better: `score(value)` is
the trial's value with the study's sign, and `value(score)` turns it back for people. The
contest (grids, race, LR law), the validation ranking and every "best" go through `score`;
every line a person reads goes through `value` and `text`/`gap`. No other module tests a
direction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from search import record

if TYPE_CHECKING:
    import optuna

__all__ = ["ACCURACY", "DEFAULT", "DIRECTIONS", "Goal"]

ACCURACY = "val_acc"  # the built-in objective's validation accuracy (the positional report)
DIRECTIONS = ("maximize", "minimize")


@dataclass(frozen=True)
class Goal:
    metric: str = ACCURACY
    direction: str = "maximize"

    @classmethod
    def of(cls, study_attrs: Mapping[str, Any]) -> Goal:
        """A study's goal, from its recorded identity (studies from before goals: accuracy,
        maximised, which is all they could be)."""
        ident = study_attrs.get(record.Study.IDENTITY) or {}
        metric = ident.get("metric", ACCURACY)
        direction = ident.get("direction", "maximize")
        return cls(str(metric), direction if direction in DIRECTIONS else "maximize")

    @classmethod
    def of_study(cls, study: optuna.Study) -> Goal:
        """`Goal.of` on an optuna Study (or anything `record.study_of` reads)."""
        return cls.of(record.study_of(study))

    def holds(self, study: optuna.Study) -> bool:
        """Whether an optuna Study optimises in this goal's direction (one objective)."""
        return [d.name.lower() for d in study.directions] == [self.direction]

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"

    @property
    def sign(self) -> float:
        return 1.0 if self.maximize else -1.0

    def score(self, value: float) -> float:
        """The value as a score, higher is better (the one place the direction is applied)."""
        return self.sign * float(value)

    def value(self, score: float) -> float:
        """A score back as the metric's own value (`score`'s inverse)."""
        return self.sign * float(score) + 0.0  # + 0.0: a loss of 0 shows as 0, not -0

    @property
    def worst(self) -> float:
        """The value that loses to every other: a diverged run's, in the metric's terms."""
        return -math.inf * self.sign

    @property
    def is_accuracy(self) -> bool:
        return self.metric == ACCURACY

    def name(self, split: str = "validation") -> str:
        """What the value is, for a line or an axis: "validation accuracy", "val_loss"; on
        another split, "test accuracy", "val_loss on the test split"."""
        if self.is_accuracy:
            return f"{split} accuracy"
        return self.metric if split == "validation" else f"{self.metric} on the {split} split"

    def short(self, split: str = "validation") -> str:
        """A table column's title: "val accuracy", "test accuracy", "val_loss"."""
        if self.is_accuracy:
            return f"{split[:3] if split == 'validation' else split} accuracy"
        return self.metric

    @property
    def better(self) -> str:
        return "higher" if self.maximize else "lower"

    def text(self, score: float) -> str:
        """A score, shown as the metric's value."""
        return f"{self.value(score):.4f}"

    def gap(self, diff: float, signed: bool = False) -> str:
        """A difference of scores (positive: better), in the metric's units: accuracy in
        points (100 x), any other metric as a plain number with its name."""
        if self.is_accuracy:
            return f"{100 * diff:+.2f} points" if signed else f"{100 * diff:.2f} points"
        return f"{diff:+.4f} {self.metric}" if signed else f"{diff:.4f} {self.metric}"

    def interval(self, low: float, high: float) -> str:
        """A confidence interval of a score difference, in the metric's units."""
        if self.is_accuracy:
            return f"[{100 * low:+.2f}, {100 * high:+.2f}] points"
        return f"[{low:+.4f}, {high:+.4f}] {self.metric}"


DEFAULT = Goal()  # the built-in objective's validation accuracy, maximised

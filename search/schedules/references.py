"""The reference shapes: schedules whose only free knob is the LR, the one list that both a
plain search (the known-good defaults it enqueues first, search.space.defaults) and the
contest (the tuned baselines every search must beat, search.contest.contenders) read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from search.schedules.catalog import ONE_CYCLE_STANDARD
from search.schedules.rescale import ScheduleConfig, stepped_per_step

__all__ = ["REFERENCES", "SCHEDULE_FREE", "SLOTS", "Reference"]


@dataclasses.dataclass(frozen=True)
class Reference:
    slot: str  # stable name: "cosine", "constant", ...
    label: str
    family: str
    params: Mapping[str, Any]  # budget-free, as schedules.ScheduleConfig holds them
    optimizer: str = ""  # "": the study's own optimizer; else a schedule-free one
    lr_factor: float = 1.0  # its LR relative to a scheduled LR (the centre of its grid)
    enqueued: bool = False  # a plain search enqueues it first (search.space.defaults)
    by_default: bool = True  # a contest runs it unless its study lists its references

    def schedule(self, lr: float, knob: Mapping[str, float]) -> ScheduleConfig:
        """At `lr`, stepped per optimizer step: a reference is a whole-run shape, the same
        function of the fraction of training at every horizon (stepped_per_step)."""
        knobs: dict[str, Any] = dict(knob, lr=lr)  # ScheduleConfig's knob fields, by name
        return ScheduleConfig(self.family, dict(self.params), **knobs,
                              per_step=stepped_per_step(self.family))


# The first one sets the LR scale of the problem (the contest centres the others' grids on it).
REFERENCES = (
    Reference("cosine", "CosineAnnealingLR (whole run)", "CosineAnnealingLR",
              {"T_max": 1.0, "eta_min_factor": 0.0}, enqueued=True),
    Reference("constant", "Constant", "Constant", {}),
    Reference("onecycle", "OneCycleLR (standard)", "OneCycleLR", dict(ONE_CYCLE_STANDARD),
              enqueued=True),
    # airbench's schedule; "Straight to Zero" (ICLR 2025) finds it beats cosine-to-10%
    Reference("linear0", "linear to zero", "PolynomialLR", {"power": 1.0}),
    # warmup-stable-decay with the standard 20% linear cooldown to zero (Hägele et al. 2024:
    # it matches cosine in language models and can stop at any time); for studies that list it
    Reference("wsd", "WSD (20% cooldown)", "WarmupStableDecay",
              {"warmup_frac": 0.02, "decay_frac": 0.2, "end_factor": 0.0}, by_default=False),
)
SCHEDULE_FREE = "schedulefree"  # the slot of the schedule-free reference (search.contest)
SLOTS = (*(r.slot for r in REFERENCES), SCHEDULE_FREE)  # what a study's `references` may name

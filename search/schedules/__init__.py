"""Learning-rate schedules: the catalog of families, rescaling to a budget, and their code.

- search.schedules.catalog: family name -> torch construction, stepping, searched parameters.
- search.schedules.rescale: a budget-free `ScheduleConfig` -> exact torch kwargs (`resolve`)
  and the scheduler itself (`build`), for any number of epochs and steps per epoch.
- search.schedules.construction: a scheduler's construction as data, built by torch and
  printed from the same value.
- search.schedules.codegen: exact kwargs -> the Python code that builds the same scheduler.
- search.schedules.references: the reference shapes (LR their only knob), read by a plain
  search's enqueued defaults and by the contest.

Nothing here imports optuna. The names below are the package's interface.
"""

from search.schedules.catalog import (
    EPOCH,
    ITERATION,
    MAX_MILESTONES,
    ONE_CYCLE_STANDARD,
    PLATEAU,
    SCHEDULES,
    WARMUP_START_FACTOR,
    Bounds,
    Family,
    Param,
    family,
    milestones,
)
from search.schedules.codegen import lit, scheduler_code
from search.schedules.references import REFERENCES, Reference
from search.schedules.rescale import (
    TRACE_POINTS,
    Built,
    ScheduleConfig,
    build,
    recorded,
    resolve,
    stepped_per_step,
)

__all__ = [
    "EPOCH",
    "ITERATION",
    "MAX_MILESTONES",
    "ONE_CYCLE_STANDARD",
    "PLATEAU",
    "REFERENCES",
    "SCHEDULES",
    "TRACE_POINTS",
    "WARMUP_START_FACTOR",
    "Bounds",
    "Built",
    "Family",
    "Param",
    "Reference",
    "ScheduleConfig",
    "build",
    "recorded",
    "family",
    "lit",
    "milestones",
    "resolve",
    "scheduler_code",
    "stepped_per_step",
]

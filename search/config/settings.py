"""A study's settings as frozen dataclasses: what a loaded study file holds."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, ClassVar

from objectives.settings import TrainConfig
from search.config.limits import LIMITS, raise_hint, train_problem
from search.errors import must
from search.goal import Goal

__all__ = ["DEFAULT_OBJECTIVE", "ContestConfig", "ParamSpec", "PrunerConfig", "SamplerConfig",
           "SpaceConfig", "StudyConfig", "WorkersConfig"]

DEFAULT_OBJECTIVE = "objectives.classify:train"


@dataclass(frozen=True)
class ParamSpec:
    """A searched range, or a fixed value when low == high."""

    low: float
    high: float
    log: bool = False

    @property
    def fixed(self) -> bool:
        return self.low == self.high

    def clip(self, value: float) -> float:
        """`value` where the range holds it, else the nearer end (a fixed spec: its value)."""
        return min(max(value, self.low), self.high)


@dataclass(frozen=True)
class SpaceConfig:
    families: tuple[str, ...]
    lr: ParamSpec = ParamSpec(1e-3, 1.0, log=True)
    momentum: ParamSpec = ParamSpec(0.9, 0.9)
    weight_decay: ParamSpec = ParamSpec(5e-4, 5e-4)
    warmup_epochs: ParamSpec = ParamSpec(0.0, 0.0)
    # AdamW's betas, searched (or fixed) where given; else the objective's `betas` apply
    beta1: ParamSpec | None = None
    beta2: ParamSpec | None = None
    # per family, overrides of the catalog's default ranges: {"StepLR": {"gamma": ParamSpec}}
    ranges: Mapping[str, Mapping[str, ParamSpec]] = field(default_factory=dict)
    default_lr: float = 0.1  # base LR of the known-good schedules enqueued first
    enqueue_defaults: bool = True
    # families kept stepping once per epoch, as torch's examples step them; every other family
    # that torch steps per epoch steps per optimizer step (search.schedules.stepped_per_step)
    per_epoch: tuple[str, ...] = ()


@dataclass(frozen=True)
class SamplerConfig:
    name: str = "tpe"  # tpe | random
    n_startup_trials: int = 10
    multivariate: bool = True
    group: bool = True


@dataclass(frozen=True)
class PrunerConfig:
    name: str = "hyperband"  # hyperband | median | none
    n_startup_trials: int = 5  # median: trials finished before pruning starts
    n_warmup_steps: int = 1  # median: epochs reported before a trial can be pruned
    min_resource: int = 1  # hyperband: epochs
    reduction_factor: int = 3  # hyperband


@dataclass(frozen=True)
class ContestConfig:
    """How the search earns its answer ([contest] of a study file; search.contest runs it).

    1. The reference shapes' LRs are tuned on grids, the first (whole-run cosine) around
       `space.default_lr`, which sets the LR scale of the problem.
    2. `shape_trials` shapes are searched with their LR a factor (`lr_factor`) of that scale.
    3. The tuned references and the `finalists` best shapes race over seeds (at most
       `max_seeds` each) on the validation split; the leader is the recommendation.
    `trials` bounds all three stages together.

    `horizons` (epochs, ascending, the last the search's length): the references' LR grids run
    as whole runs at each length, shortest first, each grid centred on the same reference's
    best LR one horizon shorter. The tuned LRs across lengths give each
    reference's LR law (search.contest.law), which carries the recommendation to another
    length (`best --epochs N`). Empty: the search's length alone, the LR not measured across
    lengths.
    """

    shape_trials: int = 12
    finalists: int = 3
    max_seeds: int = 4
    # One run's seed noise (sd of the validation accuracy) before the race has measured it:
    # 0.0037 on lr-fashion's recorded table (benchmarks/RESULTS.md).
    noise_sd: float = 0.004
    lr_factor: ParamSpec = ParamSpec(1 / 3, 3.0, log=True)
    horizons: tuple[int, ...] = ()
    # The race's equivalence margin (`[contest] equivalence`, in the metric's own units; 0.001
    # = 0.1 point of accuracy): the race stops when every challenger still in is shown within
    # it of the leader (search.contest.race, rule 6). 0: no such stop, the behaviour before
    # this key, which a study stored without it keeps.
    equivalence: float = 0.001
    # the reference slots this contest runs (search.schedules.references.SLOTS; the first,
    # whole-run cosine, always: it sets the LR scale); (): the default set
    references: tuple[str, ...] = ()
    # The LR grids, as steps of GRID_RATIO (`grid`): at the first horizon the first
    # reference's around the default LR, the others' around the scale it found; at each longer
    # one around the same reference's best one horizon shorter, extended past an edge only
    # where that edge is clearly better (half steps there measured no better:
    # benchmarks/RESULTS.md, "Time to answer"). Their runs come out of `trials` first.
    GRID_RATIO: ClassVar[float] = 3.0
    SCALE_STEPS: ClassVar[tuple[int, ...]] = (-2, -1, 0, 1, 2)
    SHAPE_STEPS: ClassVar[tuple[int, ...]] = (-1, 0, 1)
    GRID_EXTEND: ClassVar[int] = 2  # steps added past an edge of a grid where its best sits
    REFERENCES: ClassVar[int] = 5  # at most: cosine, constant, one-cycle, linear, schedule-free

    @classmethod
    def grid(cls, horizon_index: int, scale_setter: bool) -> tuple[float, tuple[int, ...]]:
        """(ratio, first steps) of a reference's LR grid at the `horizon_index`-th horizon
        (0: the first); `scale_setter`: the reference that sets the LR scale (whole-run
        cosine), whose first grid is wider. (At a longer horizon the policy extends a grid
        past an edge only where that edge beats its neighbour by more than noise.)"""
        if horizon_index == 0 and scale_setter:
            return cls.GRID_RATIO, cls.SCALE_STEPS
        return cls.GRID_RATIO, cls.SHAPE_STEPS

    def lengths(self, epochs: int) -> tuple[int, ...]:
        """The horizons the references' LRs are tuned at: those shorter than `epochs` (the
        search's length, which `run --epochs` may set), then `epochs`."""
        return (*(h for h in self.horizons if h < epochs), epochs)

    def min_trials(self) -> int:
        """The smallest `trials` that tunes every reference at every horizon, searches the
        shapes and leaves each finalist one race run."""
        refs = len(self.references) or self.REFERENCES
        grids = len(self.SCALE_STEPS) + (refs - 1) * len(self.SHAPE_STEPS)
        later = max(0, len(self.horizons) - 1) * refs * len(self.SHAPE_STEPS)
        return grids + later + self.shape_trials + self.finalists

    def budget_problem(self, trials: int) -> str:
        """Why `trials` cannot run this contest ("" where it can)."""
        if trials >= self.min_trials():
            return ""
        return (f">= {self.min_trials()} for a study with a [contest] (its reference LR "
                f"grids, {self.shape_trials} shape trials and one race run a finalist; or "
                "lower `contest.shape_trials`, or try `python -m search run --study quick` "
                "for a few-minute look)")


@dataclass(frozen=True)
class WorkersConfig:
    heartbeat_interval: int = 30  # seconds between a running trial's heartbeats
    grace_period: int = 120  # seconds without heartbeat before a trial counts as dead
    max_retry: int = 3  # how often a dead worker's trial is re-queued


@dataclass(frozen=True)
class StudyConfig:
    name: str
    path: Path | Traversable  # the study file (shipped ones are package resources)
    objective: str  # "package.module:function"
    train: TrainConfig  # what the objective trains (objectives.settings: no torch)
    space: SpaceConfig
    trials: int = 50
    seed: int = 0
    storage: str | None = None
    description: str = ""
    sampler: SamplerConfig = SamplerConfig()
    pruner: PrunerConfig = PrunerConfig()
    workers: WorkersConfig = WorkersConfig()
    contest: ContestConfig | None = None  # None: a plain search, its best trial the answer
    limits: Mapping[str, int | float] = field(default_factory=lambda: dict(LIMITS))

    @property
    def epochs(self) -> int:
        return self.train.epochs

    @property
    def goal(self) -> Goal:
        """What the study optimises (`objective.metric`, `objective.direction`)."""
        return Goal(self.train.metric, self.train.direction)

    def with_overrides(self, **train_changes: Any) -> StudyConfig:
        """A copy with objective settings replaced (CLI flags: --epochs, --data-dir, ...).

        Each value is checked as in a study file, named by its flag.
        """
        changes = {k: v for k, v in train_changes.items() if v is not None}
        if not changes:
            return self
        for k, v in changes.items():
            problem = train_problem(k, v, self.limits)
            if problem:
                raise must(f"--{k.replace('_', '-')}", problem, v, raise_hint(k, self.path, v))
        return dataclasses.replace(self, train=dataclasses.replace(self.train, **changes))

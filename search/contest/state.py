"""The contest's state, derived from the trials in the store and nothing else.

Every worker, on any machine, and every reader (`best`, `studies`, the report, the dashboard)
derives the same state from the same trials: which reference LRs were tried and which won,
the shapes searched, and the race between the contenders (search.contest.race). Nothing is
kept in memory between claims, so a killed worker leaves nothing to repair.

A trial's part in the contest is in its record (search.record): fixed runs (record.FIXED)
carry `stage` ("reference": a point of a reference's LR grid; "race": a contender on another
seed), `contender` (its key), `seed`, `label` and, for references, `slot` and `grid_step`; a
reference run at a horizon shorter than the search's carries `epochs` (every trial records the
length it trained, search.runner.Recorder). Every other trial is a searched shape.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from optuna.trial import FrozenTrial, TrialState

from search import record, schedules
from search.contest import race as racing
from search.contest import stopping
from search.goal import DEFAULT, Goal
from search.stats import SeedScores

__all__ = ["RACE", "REFERENCE", "SHAPE", "Contender", "Grid", "Run", "Settings",
           "State", "derive", "ladder", "run_of"]

REFERENCE, RACE, SHAPE = "reference", "race", "shape"


@dataclass(frozen=True)
class Settings:
    """The contest's settings as a study records them (its identity's `contest`)."""

    shape_trials: int
    finalists: int
    max_seeds: int
    noise_sd: float
    seed: int  # the training seed of the search; race seeds follow it
    epochs: int = 0  # the search's length (the last horizon); 0: unknown (no epochs recorded)
    horizons: tuple[int, ...] = ()  # the references' lengths, the last `epochs`; () as (epochs,)
    goal: Goal = Goal()  # what the study optimises: a run's score is its value with this sign
    equivalence: float = 0.0  # the race's practical margin δ (score units; 0: no equivalence
    # stop, as in a study from before it)

    @classmethod
    def of(cls, study_attrs: Mapping[str, Any]) -> Settings | None:
        """From a study's user attributes: None where the study is a plain search."""
        c = (study_attrs.get(record.Study.IDENTITY) or {}).get("contest")
        if not isinstance(c, Mapping):
            return None
        return cls(int(c["shape_trials"]), int(c["finalists"]), int(c["max_seeds"]),
                   float(c["noise_sd"]), int(study_attrs.get(record.Study.SEARCH_SEED, 0)),
                   int(study_attrs.get(record.Study.EPOCHS, 0)), tuple(c.get("horizons", ())),
                   Goal.of(study_attrs), float(c.get("equivalence", 0.0)))

    @property
    def lengths(self) -> tuple[int, ...]:
        """The horizons the references are tuned at, shortest first, the search's length last."""
        return self.horizons or (self.epochs,)

    @property
    def seeds(self) -> list[int]:
        return [self.seed + k for k in range(self.max_seeds)]


@dataclass(frozen=True)
class Run:
    """One trial of the contest."""

    number: int
    stage: str  # REFERENCE, RACE or SHAPE
    key: str  # the contender it runs ("" for a shape before its schedule is recorded)
    label: str
    slot: str  # a reference's slot ("" for shapes)
    seed: int
    state: TrialState
    score: float | None  # the value as a score (Goal.score: higher is better); -inf where a
    # fixed run diverged
    schedule: dict[str, Any] | None  # budget-free (ScheduleConfig.to_dict())
    optimizer: str  # "" (the study's) or a schedule-free optimizer name
    grid_step: int | None = None
    horizon: int = 0  # the epochs it trained (0: unknown)

    @property
    def finished(self) -> bool:
        return self.score is not None

    @property
    def lr(self) -> float:
        return float(self.schedule["lr"]) if self.schedule else math.nan


def run_of(t: FrozenTrial, search_seed: int, epochs: int = 0, goal: Goal = DEFAULT) -> Run:
    """A trial's part in the contest (see the module docstring); `epochs`: the search's
    length, the horizon of a trial that does not record its own; `goal`: the study's, which
    turns the trial's value into its score."""
    from search.contest.contenders import contender_key

    r = record.of(t)
    horizon = r.epochs if r.epochs is not None else int(epochs)
    seed = r.seed if r.seed is not None else int(search_seed)
    score: float | None = None
    if t.state == TrialState.COMPLETE and t.value is not None:
        score = goal.score(t.value)
    elif t.state == TrialState.PRUNED and r.diverged:
        score = -math.inf  # a diverged LR: the grid and the race count it as the worst
    if r.is_fixed:
        sched = dict(r.fixed or {})
        return Run(t.number, r.stage or RACE, r.contender or "", r.label or "", r.slot or "",
                   seed, t.state, score, sched, r.optimizer_name or "", r.grid_step, horizon)
    sched = r.schedule
    key = contender_key(schedules.ScheduleConfig.from_dict(sched)) if sched else ""
    label = f"trial {t.number} {sched['family']}" if sched else f"trial {t.number}"
    return Run(t.number, SHAPE, key, label, "", seed, t.state, score, sched, "", None, horizon)


@dataclass(frozen=True)
class Grid:
    """A reference's LR grid: the finished points (LR -> score) and what is in flight."""

    slot: str
    label: str
    scored: Mapping[float, float]
    runs: tuple[Run, ...]
    horizon: int = 0  # the epochs its runs trained

    @property
    def best(self) -> Run | None:
        done = [r for r in self.runs if r.finished]
        return max(done, key=lambda r: (r.score, -r.lr)) if done else None


@dataclass(frozen=True)
class Contender(SeedScores):
    """One contender of the race: a tuned reference or a searched finalist."""

    key: str
    label: str
    role: str  # "reference" or "searched"
    slot: str  # references: their slot
    schedule: dict[str, Any]
    optimizer: str
    source_trial: int  # the trial that ran its first seed
    scores: Mapping[int, float]  # seed -> score on the validation split (Goal.score)


@dataclass(frozen=True)
class State:
    settings: Settings
    runs: tuple[Run, ...]
    grids: Mapping[str, Grid]  # slot -> grid at the search's length, in the order they began
    shapes: tuple[Run, ...]
    contenders: tuple[Contender, ...]
    race: racing.Race
    racing: bool  # the race has begun: the references are tuned and the shapes searched
    ladder: Mapping[str, Mapping[int, Grid]] = dataclasses.field(default_factory=dict)
    # slot -> horizon -> grid, every horizon (the search's length included)
    behind: Mapping[str, float] = dataclasses.field(default_factory=dict)
    # slot -> how far its best trails the leading reference's at the stopping horizon, for
    # the references stopped there (`stopped`): no longer horizons, no race seat

    @property
    def running(self) -> list[Run]:
        return [r for r in self.runs if r.state == TrialState.RUNNING]

    def contender(self, key: str | None) -> Contender | None:
        return next((c for c in self.contenders if c.key == key), None)

    @property
    def leader(self) -> Contender | None:
        """The recommendation: the race's incumbent (the best shared-seed mean)."""
        return self.contender(self.race.incumbent)


def ladder(runs: Iterable[Run]) -> dict[str, dict[int, Grid]]:
    """slot -> horizon -> the reference's grid at that length, slots in the order they began."""
    by: dict[str, dict[int, list[Run]]] = {}
    for r in runs:
        if r.stage == REFERENCE:
            by.setdefault(r.slot, {}).setdefault(r.horizon, []).append(r)
    return {slot: {h: Grid(slot, rs[0].label, {r.lr: r.score for r in rs if r.score is not None},
                           tuple(rs), h) for h, rs in sorted(hs.items())}
            for slot, hs in by.items()}


def stopped(ladder: Mapping[str, Mapping[int, Grid]], settings: Settings,
            scale_slot: str) -> dict[str, float]:
    """The references that are clearly behind once every grid at the stopping horizon is
    tuned (search.contest.stopping: `stop_at` says where and how strictly, `behind` the rule,
    with the study's prior seed noise): slot -> its gap below the leader there. They take no
    more grid points, horizons or race seats. The reference that sets the LR scale
    (`scale_slot`, the first) is never stopped: the shapes' LRs are a factor of its tuned LR
    at the search's length."""
    h, z = stopping.stop_at(settings.lengths)
    bests = {slot: g.best.score for slot, hs in ladder.items()
             if (g := hs.get(h)) is not None and g.best is not None
             and g.best.score is not None}
    gaps = stopping.behind(bests, settings.noise_sd, z)
    return {slot: gap for slot, gap in gaps.items() if slot != scale_slot}


def _past_stop(runs: Sequence[Run], settings: Settings) -> bool:
    """Whether the contest has moved past the stopping horizon's grids (so all of them are
    tuned): a reference run at a longer horizon, a shape or a race run exists."""
    h, _ = stopping.stop_at(settings.lengths)
    return any(r.stage in (SHAPE, RACE) or (r.stage == REFERENCE and r.horizon > h)
               for r in runs)


def derive(trials: Sequence[FrozenTrial], settings: Settings, grids_done: bool | None = None,
           ) -> State:
    """The contest's state from the study's trials.

    `grids_done`: whether every reference grid is finished (the policy knows which grids are
    due; a reader passes None: the grids are done once a race run exists, or when nothing
    reference-stage is in flight and the shapes are searched).
    """
    runs = tuple(run_of(t, settings.seed, settings.epochs, settings.goal)
                 for t in sorted(trials, key=lambda t: t.number) if t.state != TrialState.WAITING)
    steps = ladder(runs)
    last = settings.lengths[-1] or max((r.horizon for r in runs), default=0)
    behind = (stopped(steps, settings, next(iter(steps), ""))
              if steps and _past_stop(runs, settings) else {})
    grids = {slot: hs[last] for slot, hs in steps.items() if last in hs and slot not in behind}
    shapes = tuple(r for r in runs if r.stage == SHAPE)
    contenders: list[Contender] = []
    for g in grids.values():  # 1. each reference at its best LR so far
        b = g.best
        if b is not None:
            contenders.append(Contender(b.key, g.label, "reference", g.slot, b.schedule or {},
                                        b.optimizer, b.number, {b.seed: cast(float, b.score)}))
    known = {c.key for c in contenders}
    done = sorted((r for r in shapes
                   if r.score is not None and r.key and math.isfinite(r.score)),
                  key=lambda r: (-cast(float, r.score), r.number))
    for r in done:  # 2. the best distinct searched shapes
        if sum(c.role == "searched" for c in contenders) >= settings.finalists:
            break
        if r.key not in known:
            known.add(r.key)
            contenders.append(Contender(r.key, r.label, "searched", "", r.schedule or {}, "",
                                        r.number, {r.seed: cast(float, r.score)}))
    for r in runs:  # 3. every race run of a contender, its first run per seed
        if r.stage == RACE and r.score is not None:
            c = next((c for c in contenders if c.key == r.key), None)
            if c is not None and r.seed not in c.scores:
                i = contenders.index(c)
                contenders[i] = Contender(c.key, c.label, c.role, c.slot, c.schedule,
                                          c.optimizer, c.source_trial, {**c.scores,
                                                                        r.seed: r.score})
    if grids_done is None:
        in_flight = any(r.stage in (REFERENCE, SHAPE) and r.state == TrialState.RUNNING
                        for r in runs)
        grids_done = any(r.stage == RACE for r in runs) or (
            not in_flight and sum(1 for r in shapes if r.finished
                                  or r.state == TrialState.PRUNED) >= settings.shape_trials)
    began = bool(grids_done)
    busy = [(r.key, r.seed) for r in runs if r.stage == RACE and r.state == TrialState.RUNNING]
    race = racing.race([racing.Entry(c.key, c.scores) for c in contenders],
                       settings.max_seeds if began else 1, settings.noise_sd,
                       running=busy, seeds=settings.seeds,
                       equivalence=settings.equivalence if began else 0.0)
    return State(settings, runs, grids, shapes, tuple(contenders), race, began, steps, behind)

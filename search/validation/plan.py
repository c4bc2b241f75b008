"""What `validate` trains: the study's recommendation and the tuned baselines (and, for a plain
search, its other top-k distinct schedules), at one length. Nothing here chooses a schedule.

- A contest study (search.contest): the recommendation and every reference shape at the LR the
  contest tuned on the validation split, carried to the validation's length by each one's LR
  law where the contest measured it across horizons (exactly as `best --epochs N` prints it;
  `--keep-lr`: as searched). Nothing is swept again.
- A plain search: the top-k distinct schedules (the best trial is the recommendation) and the
  reference shapes; a reference takes the LR of the study's best finished trial of its family
  where the study has MIN_STUDY_TRIALS of them at the same budget, else its LR is swept first
  (the contest's grid rule, on the validation split, the search's training seed and budget;
  `search.validation.validate.tune` trains it).

`plan_work` counts what a plan trains, for its printed line and its time (search.pace): every
schedule on every seed, each swept baseline at the LR its sweep finds included, and each
sweep's first grid points; the points a sweep adds past an edge of its grid where its best LR
sits there are counted as what they are, possible (`most`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search import pace, record, schedules, storage
from search.config import ContestConfig, StudyConfig
from search.contest import contenders as cn
from search.errors import UserError
from search.validation.companion import COMPANION_SUFFIX, companion_name

__all__ = ["COMPANION_SUFFIX", "MIN_STUDY_TRIALS", "SWEEP_STEPS", "Job", "PlanWork",
           "ValidationPlan", "add_baseline", "companion_name", "job", "plan", "sweep_lrs",
           "plan_work", "sweep_more"]

SWEEP_STEPS = ContestConfig.SCALE_STEPS  # a baseline's sweep: the contest's first grid

MIN_STUDY_TRIALS = 5  # finished trials of a family before the study's best LR is trusted


@dataclasses.dataclass(frozen=True)
class Job:
    """One schedule to train: a candidate, a baseline, or one point of a baseline's LR sweep."""

    key: str  # contender_key: the budget-free schedule and the optimizer
    label: str
    roles: tuple[str, ...]  # "recommended", "candidate", "baseline", "sweep"
    schedule: schedules.ScheduleConfig
    optimizer: str = ""  # "": the study's own optimizer; else a schedule-free one
    source_trial: int | None = None
    lr_source: str = ""  # baselines: where their LR comes from
    lr_trial: int | None = None  # baselines: the searched trial that lent its LR
    slot: str = ""  # baselines and sweeps: which reference (the same at every LR)


def job(label: str, roles: tuple[str, ...], s: schedules.ScheduleConfig, optimizer: str = "",
        **more: Any) -> Job:
    return Job(cn.contender_key(s, optimizer), label, roles, s, optimizer, **more)


def sweep_lrs(cfg: StudyConfig, ref: cn.Reference, steps: tuple[int, ...]) -> list[float]:
    """A reference's sweep around the study's default LR (x its own factor): the contest's
    grid, inside the study's LR range for a scheduled optimizer."""
    return cn.grid_lrs(cfg.space.default_lr * ref.lr_factor, steps, cn.lr_clip(cfg, ref))


def sweep_more(cfg: StudyConfig, ref: cn.Reference, steps: tuple[int, ...] = SWEEP_STEPS) -> int:
    """The most LRs a sweep adds past an edge of its first grid (`steps`) where its best LR
    sits there (contenders.next_lrs: GRID_EXTEND steps at most, while the study's LR range
    leaves room; one side, or both where the first grid is a single LR)."""
    clip, centre = cn.lr_clip(cfg, ref), cfg.space.default_lr * ref.lr_factor
    first = sweep_lrs(cfg, ref, steps)
    low = {clip(centre * cn.GRID_RATIO ** (min(steps) - k)) for k in range(1, cn.GRID_EXTEND + 1)}
    high = {clip(centre * cn.GRID_RATIO ** (max(steps) + k))
            for k in range(1, cn.GRID_EXTEND + 1)}
    below = sum(1 for lr in low if lr < min(first) * (1 - 1e-9))
    above = sum(1 for lr in high if lr > max(first) * (1 + 1e-9))
    return below + above if len(first) < 2 else max(below, above)


def _study_lr(done: list[FrozenTrial], ref: cn.Reference, epochs: int) -> FrozenTrial | None:
    """The best finished trial of the reference's family at this budget, where the study has
    at least MIN_STUDY_TRIALS of them (`done` is best first)."""
    if ref.optimizer:
        return None
    same = [t for t in done if t.params.get("scheduler") == ref.family
            and record.of(t).epochs == epochs]
    return same[0] if len(same) >= MIN_STUDY_TRIALS else None


@dataclasses.dataclass(frozen=True)
class ValidationPlan:
    """What validate trains (`plan`): the jobs, their length and the LR sweeps still due."""

    jobs: list[Job]  # the recommendation first, then candidates and the baselines known
    epochs: int  # the length they are trained for
    searched_epochs: int  # the recommended trial's length
    notes: list[str]  # for the person: what was left out and why
    sweeps: list[cn.Reference] = dataclasses.field(default_factory=list)  # LRs still to tune
    knobs: dict[str, float] = dataclasses.field(default_factory=dict)


def plan(cfg: StudyConfig, study: optuna.Study, top: int, epochs: int | None = None,
         keep_lr: bool = False) -> ValidationPlan:
    """What to validate in `study` at `epochs` (default: the recommended trial's length)."""
    from search.answer import recommended_trial

    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.value is not None]
    if not done:
        raise UserError(f"study {study.study_name!r} has no complete trial to validate; run "
                        f"`{storage.hint_command(f'run --study {study.study_name}')}` first")
    best, st = recommended_trial(study)
    searched = record.of(best).epochs
    searched = searched if searched is not None else int(cfg.epochs)
    notes: list[str] = []
    refs = cn.references(cfg, notes)
    knobs = cn.knobs(cfg)
    jobs: dict[str, Job] = {}
    if st is not None and st.leader is not None:  # 1. a contest: what it tuned, as it tuned it
        lead = st.leader

        def at_length(c: Any) -> schedules.ScheduleConfig:
            return st.schedule_at(c, epochs, keep_lr)

        roles: tuple[str, ...] = ("recommended", "baseline") if lead.role == "reference" else (
            "recommended", "candidate")
        j = job(lead.label, roles, at_length(lead), lead.optimizer, source_trial=best.number,
                slot=lead.slot)
        jobs[j.key] = j  # keyed by what is trained: its LR at this length
        for c in st.state.contenders:
            if c.role == "reference" and c.key != lead.key:  # lead: trained once, above
                moved = "" if not st.transfer(c, epochs, keep_lr).moved else (
                    f", moved to {epochs} epochs by its LR law")
                add_baseline(jobs, job(c.label, ("baseline",), at_length(c),
                                       c.optimizer, slot=c.slot, lr_trial=c.source_trial,
                                       lr_source=f"the contest's LR grid on the validation "
                                       f"split (trial {c.source_trial}){moved}"))
        if not st.decided:
            notes.append("the contest's race is not finished: the recommendation may change")
        return ValidationPlan(list(jobs.values()), epochs or searched, searched, notes, [], knobs)
    # 2. a plain search: the recommendation (its best trial) and the next best distinct ones
    done.sort(key=lambda t: (t.number != best.number, -cfg.goal.score(record.value_of(t)),
                             t.number))
    unrecorded = 0
    for t in done:
        if len(jobs) == top:
            break
        try:
            s = schedules.recorded(t)
        except UserError:  # recorded by an older schedsearch: nothing exact to re-train
            unrecorded += 1
            continue
        roles = ("recommended", "candidate") if t.number == best.number else ("candidate",)
        j = job(f"trial {t.number} {s.family}", roles, s, source_trial=t.number)
        jobs.setdefault(j.key, j)
    if len(jobs) != top:
        notes.append(f"only {len(jobs)} distinct finished schedules")
    if unrecorded:
        notes.append(f"{unrecorded} trials without a schedule record were skipped")
    sweeps = []
    for ref in refs:
        src = _study_lr(done, ref, searched)
        if src is None:
            sweeps.append(ref)
            continue
        lr = record.of(src).lr
        sampled: Any = src.params.get("lr")  # optuna's params: Any
        lr = float(lr if lr is not None else sampled)
        # what tuning the LR was worth: the best trial against the study's own default-LR run
        default = next((t for t in done if record.of(t).default
                        and t.params.get("scheduler") == ref.family), None)
        worth = (f", {record.value_of(src) - record.value_of(default):+.4f} over the study's "
                 f"default-LR trial {default.number}" if default is not None else "")
        add_baseline(jobs, job(
            ref.label, ("baseline",), ref.schedule(lr, knobs), ref.optimizer, slot=ref.slot,
            lr_source=f"LR of the best of the study's {ref.family} trials (trial {src.number})"
                      f"{worth}", lr_trial=src.number))
    return ValidationPlan(list(jobs.values()), epochs or searched, searched, notes, sweeps, knobs)


def add_baseline(jobs: dict[str, Job], b: Job) -> None:
    if b.key in jobs:  # a searched schedule that is a baseline too: trained once, both roles
        j = jobs[b.key]
        jobs[b.key] = dataclasses.replace(
            j, roles=(*j.roles, "baseline"), label=f"{j.label} (= {b.label})",
            lr_source=b.lr_source, lr_trial=b.lr_trial, slot=b.slot)
    else:
        jobs[b.key] = b


@dataclasses.dataclass(frozen=True)
class PlanWork:
    """What a plan trains (`plan_work`): `least` where no sweep is extended and every swept
    baseline is a schedule of its own, `most` with every possible extension."""

    least: pace.Work
    most: pace.Work
    epochs: int  # each run's length

    def runs(self) -> tuple[int, int]:
        return self.least.runs, self.most.runs


def plan_work(cfg: StudyConfig, p: ValidationPlan, seeds: Sequence[int], scale: float = 1.0,
              done: set[tuple[str, int, int, str]] | frozenset = frozenset()) -> PlanWork:
    """The runs plan `p` trains on `seeds`, by stage in the order they train: each sweep's
    first points, then the points it may add past an edge, then every schedule on every seed
    (each swept baseline at one of its sweep's LRs among them). `scale`: a test run's epoch in
    the search's epochs (it trains on the validation carve too); `done`: (key, seed, epochs,
    split) of the runs the companion study already holds, which are not trained again."""
    e, seed = p.epochs, cfg.train.seed
    least: list[pace.Stage] = []
    most: list[pace.Stage] = []
    keys = {j.key for j in p.jobs}
    swept_least = swept_most = 0
    span = tuple(range(min(SWEEP_STEPS) - cn.GRID_EXTEND, max(SWEEP_STEPS) + cn.GRID_EXTEND + 1))
    for ref in p.sweeps:
        def key(lr: float, ref: cn.Reference = ref) -> str:  # a sweep point's = its baseline's
            return job(ref.label, (), ref.schedule(lr, p.knobs), ref.optimizer).key

        first = sweep_lrs(cfg, ref, SWEEP_STEPS)
        every = cn.grid_lrs(cfg.space.default_lr * ref.lr_factor, span, cn.lr_clip(cfg, ref))
        first_left = sum(1 for lr in first if (key(lr), seed, e, "val") not in done)
        more_left = max(0, sweep_more(cfg, ref) - sum(
            1 for lr in every if lr not in first and (key(lr), seed, e, "val") in done))
        least.append(pace.Stage(f"sweep of {ref.label}", first_left, float(e)))
        most.append(pace.Stage(f"sweep of {ref.label}", first_left, float(e)))
        most.append(pace.Stage(f"sweep of {ref.label}, extended", more_left, float(e)))
        # its baseline on every seed, at the LR the sweep finds: trained once where that is a
        # schedule the plan trains anyway
        held = sum(1 for s in seeds if any((key(lr), s, e, "test") in done for lr in every))
        swept_most += len(seeds) - held
        swept_least += 0 if any(key(lr) in keys for lr in every) else len(seeds) - held
    known = sum(1 for j in p.jobs for s in seeds if (j.key, s, e, "test") not in done)
    test = float(e) * scale
    least.append(pace.Stage("test runs", known + swept_least, test))
    most.append(pace.Stage("test runs", known + swept_most, test))
    return PlanWork(pace.Work(tuple(least)), pace.Work(tuple(most)), e)

"""The contest as a claim policy (search.engine.claim): under the study's claim lock, decide
what the next trial is, from the trials in the store alone.

1. The first reference (whole-run cosine) runs its LR grid around the study's default LR;
   its best LR is the problem's LR scale (study attr record.Study.LR_SCALE). With `horizons`, every
   reference's grid runs at each horizon first, shortest first (`contest_plan`).
2. The other references run their grids around that scale (x their own LR factor), and
   `shape_trials` shapes are sampled (TPE, pruned as the study file says) with their LR a
   factor of the scale (space.suggest with lr_scale).
3. The tuned references and the best shapes race over seeds (search.contest.race) until the
   race is decided or `trials` runs are spent.

A grid whose best LR sits on an edge is extended past it (contenders.next_lrs); where the
study's LR range stops it, the state says that reference is not tuned.
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from search import record, runner
from search.config import StudyConfig
from search.contest import contenders as cn
from search.contest.law import laws
from search.contest.state import (
    RACE,
    REFERENCE,
    SHAPE,
    Settings,
    State,
    derive,
    ladder,
    stopped,
)

__all__ = ["ContestPolicy", "ContestPlan", "Due", "contest_plan"]

DONE, WAIT = runner.DONE, runner.WAIT


@dataclass(frozen=True)
class Due:
    """A fixed run to enqueue: its record identifies it (contender key, seed, stage, length)."""

    key: str
    seed: int
    run: record.Enqueued


@dataclass(frozen=True)
class ContestPlan:
    """What the contest needs next (`contest_plan`): the state it read, the fixed runs due, the
    shapes still to sample and the LR scale."""

    state: State
    due: tuple[Due, ...]  # fixed runs to train next, in order
    shapes_due: int  # shape trials still to sample
    scale: float | None


def _grid_due(cfg: StudyConfig, ref: cn.Reference, state_runs: list, centre: float,
              first: tuple[int, ...], seed: int, horizon: int, ratio: float,
              margin: float = 0.0) -> tuple[list[Due], bool, float | None]:
    """A reference's grid at `horizon` epochs (steps of `ratio` around `centre`): the points
    still to run, whether it is finished, its best LR. An edge is extended where the best
    sits on it (by more than `margin` over its neighbour: contenders.next_lrs)."""
    mine = [r for r in state_runs if r.stage == REFERENCE and r.slot == ref.slot
            and r.horizon == horizon]
    clip, kn = cn.lr_clip(cfg, ref), cn.knobs(cfg)
    steps = tuple(sorted({*first, *(r.grid_step for r in mine if r.grid_step is not None)}))
    have = {r.grid_step for r in mine if r.finished or r.state == TrialState.RUNNING}
    short = horizon if horizon != cfg.epochs else None
    due = []
    for k in steps:
        if k in have:
            continue
        lr = clip(centre * ratio ** k)
        if any(abs(r.lr / lr - 1) < 1e-9 and (r.finished or r.state == TrialState.RUNNING)
               for r in mine):
            continue  # clipped onto an LR already run
        s = ref.schedule(lr, kn)
        key = cn.contender_key(s, ref.optimizer)
        due.append(Due(key, seed, record.Enqueued(
            schedule=s.to_dict(), stage=REFERENCE, slot=ref.slot, label=ref.label,
            grid_step=k, seed=seed, contender=key, epochs=short,
            optimizer_name=ref.optimizer or None)))
    if due or any(r.state == TrialState.RUNNING for r in mine) or not any(
            r.finished for r in mine):
        return due, False, None
    scored = {r.lr: r.score for r in mine if r.finished}
    more = cn.next_lrs(scored, centre, clip, first, steps, ratio, margin)
    if more:
        extra, _, _ = _grid_due(cfg, ref, state_runs, centre, (*first, *more), seed, horizon,
                                ratio, margin)
        return extra, False, None
    best = max(scored, key=lambda lr: (scored[lr], -lr))
    return [], True, best


def contest_plan(cfg: StudyConfig, trials: list[FrozenTrial],
                 live: bool = True) -> ContestPlan:
    """What the contest needs next, from `trials` (the study's, WAITING ones included).

    The references' grids run horizon by horizon, shortest first: at the first, whole-run
    cosine around the default LR, the others around its best (x their LR factor); at each
    longer one, every reference around its own best one horizon shorter. None is stopped at
    a short horizon: the 2-epoch ranking of the references is no guide to the 8-epoch one
    (benchmarks/RESULTS.md, "The LR for the user's training length"), and each is a
    baseline the answer must beat. The shapes and the race follow at the search's length,
    the last horizon."""
    c = cfg.contest
    assert c is not None  # a contest study's plan
    settings = Settings(c.shape_trials, c.finalists, c.max_seeds, c.noise_sd, cfg.train.seed,
                        cfg.epochs, c.lengths(cfg.epochs) if c.horizons else (), cfg.goal,
                        c.equivalence)
    refs = cn.references(cfg)
    state = derive(trials, settings, grids_done=False)
    runs = list(state.runs)
    if not live:  # without heartbeats a RUNNING trial may be a dead one: run it again
        runs = [r for r in runs if r.state != TrialState.RUNNING]
    seed = settings.seed
    due: list[Due] = []
    done_all, scale = False, None
    going: dict[str, float] = {}  # slot -> its best LR one horizon shorter
    # a longer horizon's grid is extended past an edge only where the edge is better than
    # its neighbour by more than the noise of a paired difference allows
    for i, h in enumerate(settings.lengths):
        ratio, first = c.grid(i, scale_setter=True)
        margin = cn.edge_margin(settings.noise_sd, i)
        centre0 = cfg.space.default_lr if i == 0 else going[refs[0].slot]
        d, done_all, best0 = _grid_due(cfg, refs[0], runs, centre0, first, seed, h, ratio,
                                       margin)
        due += d
        if best0 is None:
            break
        found = {refs[0].slot: best0}
        for ref in refs[1:]:
            if i > 0 and ref.slot not in going:
                continue  # stopped one horizon shorter: clearly behind
            centre = best0 * ref.lr_factor if i == 0 else going[ref.slot]
            ratio_i, steps_i = c.grid(i, scale_setter=False)
            d, ok, best = _grid_due(cfg, ref, runs, centre, steps_i, seed, h, ratio_i, margin)
            due += d
            done_all = done_all and ok
            if best is not None:
                found[ref.slot] = best
        if h == settings.lengths[-1]:
            scale = best0
        elif not done_all:
            break
        else:
            out = (stopped(ladder(runs), settings, refs[0].slot)
                   if i == len(settings.lengths) - 2 else {})
            going = {slot: lr for slot, lr in found.items() if slot not in out}
    shapes_due = 0
    if scale is not None:
        used = sum(1 for r in runs if r.stage == SHAPE and r.state in (
            TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING))
        shapes_due = max(0, c.shape_trials - used)
    shapes_running = any(r.stage == SHAPE and r.state == TrialState.RUNNING for r in runs)
    if scale is not None and done_all and shapes_due == 0 and not shapes_running:
        state = derive(trials, settings, grids_done=True)
        by_key = {x.key: x for x in state.contenders}
        for key, s in state.race.due:
            x = by_key[key]
            due.append(Due(key, s, record.Enqueued(
                schedule=x.schedule, stage=RACE, contender=key, seed=s, label=x.label,
                slot=x.slot, source_trial=x.source_trial,
                optimizer_name=x.optimizer or None)))
    return ContestPlan(state, tuple(due), shapes_due, scale)


def _matches(t: FrozenTrial, p: ContestPlan) -> bool:
    """Whether a queued trial is one the plan wants next."""
    r = record.of(t)
    if r.is_fixed:
        return any(d.key == r.contender and d.seed == r.seed and d.run.stage == r.stage
                   and d.run.epochs == r.epochs for d in p.due)
    return not p.due and p.shapes_due > 0  # a retried shape, while shapes are wanted


class ContestPolicy:
    """The claim policy of a contest study: `trials` runs in all, then done (a
    search.engine.claim.ClaimPolicy, structurally: the contest sits below the engine)."""

    def __init__(self, cfg: StudyConfig, target: int) -> None:
        self.cfg, self.target = cfg, target
        self.last: ContestPlan | None = None
        self.stored = -1  # finished trials when the LR law was last stored

    def __call__(self, study: optuna.Study, live: bool) -> str | None:
        trials = study.get_trials(deepcopy=False)
        finished = sum(1 for t in trials if t.state in record.FINISHED)
        running = sum(1 for t in trials if t.state == TrialState.RUNNING) if live else 0
        p = self.last = contest_plan(self.cfg, trials, live)
        if p.scale is not None:
            record.set_study(study, record.Study.LR_SCALE, p.scale)
        if p.state.racing and finished != self.stored:  # the fit, for people (the dashboard)
            self.stored = finished
            fits = {law.label: law.fields() for law in laws(p.state.ladder,
                                                            p.state.race.sigma).values()}
            if fits:  # each reference's LR law (search.contest.law), as fitted once the race
                # has begun; every reader fits it again from the trials, the same way
                record.set_study(study, record.Study.LR_LAW, fits)
        if finished >= self.target:
            return DONE
        if finished + running >= self.target:
            return WAIT
        if p.due or p.shapes_due > 0:
            return None
        return WAIT if running else DONE

    def wanted(self, trial: FrozenTrial) -> bool:
        """Whether a queued trial is one the plan wants next (claim.take_queued)."""
        assert self.last is not None  # __call__ runs first, under the same lock
        return _matches(trial, self.last)

    def next_run(self) -> record.Enqueued | None:
        """The next fixed run to queue where none is (None: a shape is sampled)."""
        assert self.last is not None
        return self.last.due[0].run if self.last.due else None

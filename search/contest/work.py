"""What a contest still has to train, for its ETA (search.pace): derived, like its state, from
the trials in the store alone.

Stage by stage, in the order the policy runs them (search.contest.policy):

1. The reference grids, horizon by horizon (shortest first): each reference's grid at each
   length, its first points (ContestConfig.SCALE_STEPS for whole-run cosine at the first
   horizon, SHAPE_STEPS otherwise) less those finished or running, or the points the policy
   has due now where they are more (a grid extended past an edge). Whole runs of that many
   epochs: a fixed run is never pruned.
2. The shapes: `shape_trials` less those finished or running, at the search's length, each
   expected to train what the study's pruner lets shape i expect (pace.pruner_prior), scaled
   by what the finished shapes trained (pace.prior_scale).
3. The race, at the search's length: the runs the racing rule would still ask for if every
   contender scored its mean so far on every seed to come, the seed noise held at what the
   race measures now (`race_runs`); a contender not known yet (the shapes still to come)
   expects max_seeds - 1 more seeds.

The trials still to start are at most what `target` allows (the policy's bound on all three):
the last stages are cut first.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from optuna.trial import FrozenTrial, TrialState

from search import pace, record
from search.config import StudyConfig
from search.contest import contenders as cn
from search.contest import race as racing
from search.contest.policy import contest_plan
from search.contest.state import RACE, REFERENCE, SHAPE, derive

if TYPE_CHECKING:
    import optuna

__all__ = ["race_runs", "remaining", "tracker"]

HELD = 1e12  # degrees of freedom that hold the race's seed noise where it is measured now


def race_runs(contenders: Sequence[racing.Entry], max_seeds: int, sigma: float,
              seeds: Sequence[int], running: Sequence[tuple[str, int]] = ()) -> int:
    """Race runs still to start (the `running` ones not counted) if each contender scored its
    mean so far on every seed to come, at seed noise `sigma` (search.contest.race)."""
    scores = {c.key: dict(c.scores) for c in contenders if c.scores}

    def mean(key: str) -> float:
        return math.fsum(scores[key].values()) / len(scores[key])

    for key, seed in running:  # in flight: as if run at its mean
        if key in scores:
            scores[key].setdefault(seed, mean(key))
    n, most = 0, len(scores) * max_seeds
    while n < most:
        due = racing.race([racing.Entry(k, v) for k, v in scores.items()], max_seeds,
                          sigma, HELD, seeds=seeds).due
        if not due:
            break
        for key, seed in due:
            scores[key][seed] = mean(key)
        n += len(due)
    return n


def remaining(cfg: StudyConfig, trials: Sequence[FrozenTrial], target: int,
              shape_prior: Sequence[float]) -> pace.Work:
    """What the contest of `cfg` still trains until `target` trials have finished, from the
    study's `trials`; `shape_prior`: epochs shape i is expected to train (pace.pruner_prior
    of the study's pruner over `shape_trials` trials)."""
    c = cfg.contest
    assert c is not None  # a contest study's work
    p = contest_plan(cfg, list(trials))
    st = p.state
    settings = st.settings
    epochs = settings.lengths[-1]
    refs = cn.references(cfg)
    by_number = {t.number: t for t in trials}
    runs = st.runs
    stages: list[pace.Stage] = []
    running: dict[int, float] = {}

    # 1. The reference grids, horizon by horizon.
    due = Counter((d.run.slot, d.run.epochs or epochs) for d in p.due
                  if d.run.stage == REFERENCE)
    for i, h in enumerate(settings.lengths):
        left = 0
        for j, ref in enumerate(refs):
            if ref.slot in st.behind and h > max(st.ladder[ref.slot]):
                continue  # stopped at a shorter horizon
            first = len(c.grid(i, scale_setter=j == 0)[1])
            have = sum(1 for r in runs if r.stage == REFERENCE and r.slot == ref.slot
                       and r.horizon == h and (r.finished or r.state == TrialState.RUNNING))
            left += max(first - have, due[(ref.slot, h)])
        stages.append(pace.Stage("grid run", left, float(h)))

    # 2. The shapes: the pruner's expectation, scaled by what the finished ones trained.
    shapes = [r for r in runs if r.stage == SHAPE]
    trained = [record.epochs_trained(by_number[r.number]) for r in shapes
               if r.state in record.FINISHED]
    scale = pace.prior_scale(shape_prior, trained)

    def expected(k: int) -> float:
        if not shape_prior:
            return float(epochs)
        return scale * shape_prior[min(k, len(shape_prior) - 1)]

    k = len(trained)
    for r in shapes:
        if r.state == TrialState.RUNNING:
            running[r.number] = expected(k)
            k += 1
    to_start = max(0, c.shape_trials - k)
    stages.append(pace.Stage("shape", to_start, math.fsum(
        expected(i) for i in range(k, k + to_start)) / to_start if to_start else float(epochs)))

    # 3. The race: projected from the contenders' scores so far.
    busy = [(r.key, r.seed) for r in runs if r.stage == RACE and r.state == TrialState.RUNNING]
    for r in runs:
        if r.state == TrialState.RUNNING and r.stage != SHAPE:
            running[r.number] = float(r.horizon or epochs)
    known = st.contenders if st.racing else derive(trials, settings, grids_done=True).contenders
    ahead = [racing.Entry(x.key, x.scores) for x in known]
    sigma = racing.race(ahead, 1, settings.noise_sd).sigma  # the race's own measure
    race = race_runs(ahead, settings.max_seeds, sigma, settings.seeds, busy)
    if not st.racing:
        unknown = len(refs) + min(c.finalists, c.shape_trials) - len(known)
        race += max(0, unknown) * (settings.max_seeds - 1)
    stages.append(pace.Stage("race run", race, float(epochs)))

    # The policy's bound: `target` trials in all.
    finished = sum(1 for t in trials if t.state in record.FINISHED)
    allowed = max(0, target - finished - len(running))
    cut = []
    for s in stages:
        n = min(s.runs, allowed)
        allowed -= n
        cut.append(pace.Stage(s.name, n, s.epochs))
    return pace.Work(tuple(cut), running)


def tracker(cfg: StudyConfig, target: int, study: optuna.Study
            ) -> Callable[[Sequence[FrozenTrial]], pace.Work]:
    """`remaining` for this study's run of `target` trials, the pruner's prior for its shapes
    computed once (what the progress display is given: Progress.plan)."""
    assert cfg.contest is not None  # a contest study's tracker
    prior = pace.pruner_prior(getattr(study, "pruner", None), int(cfg.epochs),
                              cfg.contest.shape_trials, getattr(study, "study_name", ""))
    return lambda trials: remaining(cfg, trials, target, prior)

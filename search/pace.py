"""How long a run takes: the rule behind `run`'s ETA and `validate`'s estimate of its plan.

Time is epochs x seconds per epoch, plus trials x seconds to start one (building the model,
the first batches), both measured (`Pace`), shared among the trials trained side by side.

The epochs still to train are the uncertain part: a pruner stops most trials early, and how
early depends on where a trial falls in the run. Before any trial has finished, the study's
own pruner says it (`pruner_prior`): run on stand-in trials (learning curves of random quality,
ranked alike at every epoch), it gives the epochs that trial i of the run can expect to train.
Early trials train longer: the enqueued defaults are never pruned, and successive halving
(Hyperband's brackets) promotes the first trials at each rung, having nothing to compare them
with. As trials finish, the epochs they actually trained scale that expectation (`epochs_left`:
observed over expected, shrunk toward 1 by PRIOR_WEIGHT trials' worth of the prior, so that a
few lucky or unlucky trials do not swing it).

Measured on the recorded Fashion-MNIST curves replayed through the shipped Hyperband pruner
(tests/test_pace.py): within 20% of the real total from a fifth of the run on, where the
previous rule (the full budget until a trial finished, then the plain mean) started at twice
the real total.

A run made of stages of known lengths (a contest: reference grids of 2-, 4- and 8-epoch whole
runs, shapes at the search's length that the pruner may stop, then the race over seeds) says
what it still has to train as `Work`: the runs still to start, stage by stage, each with the
epochs it is expected to train, and what each running trial is expected to train in all
(search.contest.work builds it from the trials in the store). `validate`'s plan is `Work` too.
The time is the same rule either way: epochs x seconds per epoch + runs x seconds to start one.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search import record

__all__ = ["PRIOR_WEIGHT", "Pace", "Stage", "Work", "epochs_left", "eta_seconds", "measure",
           "work_seconds", "prior_scale", "pruner_prior"]

PRIOR_WEIGHT = 10  # trials' worth of the pruner's prior against what finished trials trained
SIM_SEEDS = 8  # stand-in runs averaged for the prior
SIM_TRIALS = 100  # stand-in trials a run; later trials expect what the last third trained


@dataclass(frozen=True)
class Pace:
    """Measured speed: seconds one epoch takes, and seconds one trial (or run) takes to start
    beyond its epochs."""

    seconds_per_epoch: float
    seconds_per_trial: float = 0.0


def pruner_prior(pruner: Any, budget: int, trials: int, study_name: str = "",
                 defaults: int = 0) -> list[float]:
    """Epochs trial i of a run of `trials` is expected to train (i = 0, 1, ...) under `pruner`
    (an optuna pruner; None: none), `budget` epochs at most, the first `defaults` never pruned.

    `study_name` places trials in Hyperband's brackets as the real study does (by a hash of the
    name and the trial number). A pruner that cannot be run on stand-ins gives the full budget.
    """
    if pruner is None or isinstance(pruner, optuna.pruners.NopPruner) or budget <= 1:
        return [float(budget)] * trials
    n = min(trials, SIM_TRIALS)
    totals = [0.0] * n
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        for seed in range(SIM_SEEDS):
            for i, reached in enumerate(_stand_in_run(pruner, budget, n, study_name, defaults,
                                                      seed)):
                totals[i] += reached / SIM_SEEDS
    except Exception:  # a pruner of the user's that needs more than a study and reports
        return [float(budget)] * trials
    finally:
        optuna.logging.set_verbosity(verbosity)
    tail = totals[-max(1, n // 3):]
    return totals + [sum(tail) / len(tail)] * (trials - n)


def _stand_in_run(pruner: Any, budget: int, n: int, name: str, defaults: int,
                  seed: int) -> list[int]:
    """Epochs each of `n` stand-in trials trained under a copy of `pruner`."""
    rng = random.Random(seed)
    study = optuna.create_study(direction="maximize", study_name=name or "study",
                                pruner=copy.deepcopy(pruner))
    out = []
    for i in range(n):
        trial = study.ask()
        quality, reached, value = rng.random(), budget, 0.0
        for epoch in range(1, budget + 1):
            value = quality * (1 - 0.6 ** epoch) + rng.gauss(0, 0.02)
            trial.report(value, epoch)
            if i >= defaults and trial.should_prune():
                reached = epoch
                break
        if reached < budget:
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, value)
        out.append(reached)
    return out


def _expected(prior: Sequence[float], i: int) -> float:
    return prior[i] if i < len(prior) else (prior[-1] if prior else 1.0)


def prior_scale(prior: Sequence[float], finished: Sequence[int],
                weight: float = PRIOR_WEIGHT) -> float:
    """What the finished trials trained over what the prior expected of them (the first
    len(finished) trials of `prior`), shrunk toward 1 by `weight` trials' worth of the prior."""
    mass = weight * (sum(prior) / len(prior) if prior else 1.0)
    return (mass + sum(finished)) / (mass + sum(_expected(prior, i)
                                                for i in range(len(finished))))


def epochs_left(prior: Sequence[float], finished: Sequence[int], running: Sequence[int],
                target: int, weight: float = PRIOR_WEIGHT) -> tuple[float, int]:
    """(epochs still to train until `target` trials have finished, trials still to start).

    `prior`: epochs trial i is expected to train (`pruner_prior`); `finished`: the epochs each
    finished trial trained, oldest first; `running`: the epochs each running trial has trained
    so far (they are the next trials of the run).
    """
    n, k = len(finished), len(running)
    to_start = max(0, target - n - k)

    def expected(i: int) -> float:
        return _expected(prior, i)

    # 1. Observed over expected, over the finished trials, shrunk toward 1.
    scale = prior_scale(prior, finished, weight)
    # 2. Each running trial: what it can expect, less what it has trained.
    left = sum(max(0.0, scale * expected(n + j) - done) for j, done in enumerate(running))
    # 3. Each trial still to start: what it can expect.
    left += scale * sum(expected(i) for i in range(n + k, n + k + to_start))
    return left, to_start


@dataclass(frozen=True)
class Stage:
    """Runs of one kind still to start: `runs` runs, each expected to train `epochs` epochs
    (the pruner's expectation where it may stop them; in epochs of the search's length, so a
    run on more data an epoch counts more)."""

    name: str  # what one run is, for people ("grid run", "shape")
    runs: int
    epochs: float

    @property
    def total(self) -> float:
        return self.runs * self.epochs


@dataclass(frozen=True)
class Work:
    """What a run still has to train: `stages` of runs still to start, in the order they run,
    and `running`: each running trial's number -> the epochs it is expected to train in all."""

    stages: tuple[Stage, ...] = ()
    running: Mapping[int, float] = field(default_factory=dict)

    @property
    def runs(self) -> int:
        """Runs still to start."""
        return sum(s.runs for s in self.stages)

    @property
    def epochs(self) -> float:
        """Epochs of the runs still to start."""
        return sum(s.total for s in self.stages)

    def epochs_left(self, done: Mapping[int, int]) -> float:
        """Epochs still to train: the runs to start, and each running trial's expectation less
        `done[number]`, the epochs it has trained so far (as the display saw them)."""
        return self.epochs + sum(max(0.0, total - done.get(number, 0))
                                 for number, total in self.running.items())


def eta_seconds(epochs: float, trials: int, pace: Pace | None, parallel: int = 1) -> float | None:
    """Seconds to train `epochs` more epochs and start `trials` more trials at `pace`, with
    `parallel` trials trained side by side; None while the pace is unknown."""
    if pace is None:
        return None
    return (epochs * pace.seconds_per_epoch + trials * pace.seconds_per_trial) / max(1, parallel)


def measure(trials: Iterable[FrozenTrial]) -> Pace | None:
    """The pace of finished trials, read from the store: their wall time against the epochs
    they trained, fitted as start + epochs x per epoch (None without a finished trial)."""
    points = [(float(e), (t.datetime_complete - t.datetime_start).total_seconds())
              for t in trials
              if t.state.is_finished() and t.datetime_start and t.datetime_complete
              and (e := record.epochs_trained(t)) > 0]
    points = [(e, s) for e, s in points if s > 0]  # trials made without a clock (imported)
    if not points:
        return None
    ratio = Pace(sum(s for _, s in points) / sum(e for e, _ in points))
    xs = [e for e, _ in points]
    if len(set(xs)) < 2:
        return ratio
    mx, my = sum(xs) / len(xs), sum(s for _, s in points) / len(points)
    slope = (sum((e - mx) * (s - my) for e, s in points)
             / sum((e - mx) ** 2 for e in xs))
    start = my - slope * mx
    return Pace(slope, start) if slope > 0 and start >= 0 else ratio


def work_seconds(work: Work, pace: Pace, workers: int = 1) -> float:
    """Seconds to train a plan's `work` (`validate`'s: none of its runs is pruned) at `pace`
    (e.g. `measure(study.trials)`), on `workers` processes taking runs in turn: each stage in
    rounds of `workers` runs side by side, one stage after the other (a sweep's next points
    wait for its scores). With one process it is `eta_seconds` of the same work."""
    w = max(1, workers)
    return sum(math.ceil(s.runs / w) * (s.epochs * pace.seconds_per_epoch
                                        + pace.seconds_per_trial)
               for s in work.stages if s.runs > 0)

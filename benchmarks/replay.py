"""Searches replayed on a recorded learning-curve table instead of training.

A table (benchmarks/record_curves.py) holds schedules of a study's space, each trained to the
full budget without pruning: its parameters, every epoch's validation accuracy, the test
accuracy at the end. Feeding those curves to a study's real Optuna pruner, or answering a real
sampler's suggestions from them, replays a search in milliseconds per trial:

- `replay_pruner`: the table's schedules, in a given order, reported epoch by epoch to a
  pruner exactly as `search.runner.Recorder` reports them (step = epochs trained, a prune
  check after every report). What is pruned, and when, is what the search would have done.
- `Surrogate`: a nearest-neighbour model of the table (same family, distance over the
  parameters as their distributions scale them), so a sampler's suggestion gets a recorded
  curve; `replay_search` runs a study's sampler + pruner on it.
- `spearman`: rank correlation, for how well early accuracy ranks final accuracy.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    json_to_distribution,
)
from optuna.trial import TrialState

from search import record
from search import space as search_space
from search.config import StudyConfig

__all__ = ["CurveRow", "CurveTable", "PrunerRun", "SameFamily", "SearchRun", "Surrogate",
           "halving", "replay_pruner", "replay_search", "spearman"]


@dataclass(frozen=True)
class CurveRow:
    """One recorded training: the schedule's Optuna params and its curves."""

    trial: int
    seed: int
    family: str
    params: dict[str, Any]
    distributions: dict[str, BaseDistribution]
    val_acc: np.ndarray  # (epochs,)
    test_acc: float | None
    repeat_of: int | None = None
    short: dict[int, np.ndarray] = dataclasses.field(default_factory=dict)  # epochs -> curve

    @property
    def final(self) -> float:
        return float(self.val_acc[-1])


@dataclass(frozen=True)
class CurveTable:
    rows: list[CurveRow]  # the first seed: one row per schedule
    repeats: list[CurveRow]  # schedules trained again on another seed (`repeat_of` a row's trial)
    setting: dict[str, Any]
    provenance: dict[str, Any]

    @property
    def epochs(self) -> int:
        return int(self.setting["epochs"])

    @property
    def finals(self) -> np.ndarray:
        return np.array([r.final for r in self.rows])

    def curves(self) -> np.ndarray:
        return np.stack([r.val_acc for r in self.rows])

    @classmethod
    def load(cls, path: str | Path) -> CurveTable:
        with gzip.open(path, "rt") as f:
            doc = json.load(f)
        rows = [_row(r) for r in doc["rows"]]
        first = [r for r in rows if r.repeat_of is None]
        return cls(first, [r for r in rows if r.repeat_of is not None], doc["setting"],
                   doc["provenance"])

    def subset(self, rows: Sequence[CurveRow]) -> CurveTable:
        keep = {r.trial for r in rows}
        return dataclasses.replace(self, rows=list(rows),
                                   repeats=[r for r in self.repeats if r.repeat_of in keep])


def _row(r: dict[str, Any]) -> CurveRow:
    dists = {k: json_to_distribution(v) for k, v in r["distributions"].items()}
    short = {int(e): np.array(c, dtype=float) for e, c in r.get("short", {}).items()}
    return CurveRow(r["trial"], r["seed"], r["family"], r["params"], dists,
                    np.array(r["val_acc"], dtype=float), r.get("test_acc"), r.get("repeat_of"),
                    short)


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation (ties take their average rank)."""
    ra, rb = _ranks(np.asarray(a, float)), _ranks(np.asarray(b, float))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = math.sqrt(float((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / denom) if denom else math.nan


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x), dtype=float)
    for v in np.unique(x):  # ties: their mean rank
        tied = x == v
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks


def _study(pruner: optuna.pruners.BasePruner,
           sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
    # A fixed name: HyperbandPruner assigns brackets by hashing the study name.
    return optuna.create_study(study_name="replay", direction="maximize", pruner=pruner,
                               sampler=sampler or optuna.samplers.RandomSampler(0))


def _train_on(study: optuna.Study, trial: optuna.Trial, curve: np.ndarray,
              never_prune: bool = False) -> tuple[int, bool]:
    """Report `curve` as the Recorder does; tell the end. Returns (epochs trained, pruned)."""
    for k, acc in enumerate(curve):
        trial.report(float(acc), k + 1)
        if not never_prune and trial.should_prune():
            study.tell(trial, state=TrialState.PRUNED)
            return k + 1, True
    study.tell(trial, float(curve[-1]))
    return len(curve), False


class SameFamily(optuna.pruners.BasePruner):
    """A pruner that compares a trial only with finished trials of its own family.

    The wrapped pruner sees the study through a view whose `get_trials` holds only trials
    with the same `scheduler`: a schedule is measured against schedules of its own shape at
    the same epoch, not against shapes that decay earlier (the short-horizon trap).
    """

    def __init__(self, inner: optuna.pruners.BasePruner) -> None:
        self.inner = inner

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return self.inner.prune(_FamilyView(study, trial.params.get("scheduler")), trial)


class _FamilyView:
    def __init__(self, study: optuna.Study, family: Any) -> None:
        self._study, self._family = study, family

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def get_trials(self, *args: Any, **kwargs: Any) -> list[optuna.trial.FrozenTrial]:
        return [t for t in self._study.get_trials(*args, **kwargs)
                if t.params.get("scheduler") == self._family]


@dataclass(frozen=True)
class PrunerRun:
    epochs: int  # epochs trained over the whole replay
    pruned: np.ndarray  # bool per table row
    best: int  # index of the best completed row (by final validation accuracy)


def replay_pruner(table: CurveTable, pruner: optuna.pruners.BasePruner,
                  order: Sequence[int]) -> PrunerRun:
    """The table's rows trained in `order` under `pruner`: what it prunes, what it costs."""
    study = _study(pruner)
    curves = table.curves()
    pruned = np.zeros(len(table.rows), dtype=bool)
    spent = 0
    for i in order:  # each row enqueued as a fixed trial: the pruner sees its parameters
        study.enqueue_trial(table.rows[i].params)
        trial = study.ask(fixed_distributions=table.rows[i].distributions)
        trained, pruned[i] = _train_on(study, trial, curves[i])
        spent += trained
    done = [i for i in order if not pruned[i]]
    best = max(done, key=lambda i: curves[i][-1]) if done else -1
    return PrunerRun(spent, pruned, best)


class Surrogate:
    """Answers a suggestion with the recorded curve of its nearest table row.

    Only rows of the same family (and the same warmup choice) are neighbours. Distance: each
    parameter scaled to [0, 1] by its distribution (log-scaled where the distribution is
    log), categorical ones 0 or 1, a parameter only one side has 1. `k` > 1 averages the k
    nearest curves.
    """

    def __init__(self, rows: Sequence[CurveRow], k: int = 1) -> None:
        self.rows, self.k = list(rows), k
        self._by_group: dict[tuple[str, Any], list[int]] = {}
        for i, r in enumerate(self.rows):
            self._by_group.setdefault(_group(r.params), []).append(i)

    def curve(self, params: dict[str, Any],
              distributions: dict[str, BaseDistribution], exclude: int = -1) -> np.ndarray:
        group = self._by_group.get(_group(params)) or [
            i for i, r in enumerate(self.rows) if r.family == params["scheduler"]] or list(
            range(len(self.rows)))  # a family the table lacks: the nearest of any
        cand = [i for i in group if i != exclude] or group
        d = np.array([_distance(params, distributions, self.rows[i]) for i in cand])
        nearest = [cand[j] for j in np.argsort(d, kind="stable")[: self.k]]
        return np.mean([self.rows[i].val_acc for i in nearest], axis=0)

    def loo_error(self) -> tuple[float, float]:
        """Leave-one-out error of the final accuracy: (mean absolute, rank correlation)."""
        pred = [self.curve(r.params, r.distributions, exclude=i)[-1]
                for i, r in enumerate(self.rows)]
        true = [r.final for r in self.rows]
        return float(np.mean(np.abs(np.subtract(pred, true)))), spearman(pred, true)


def _group(params: dict[str, Any]) -> tuple[str, Any]:
    return params["scheduler"], params.get("warmup")


def _scaled(v: Any, dist: BaseDistribution) -> float:
    if isinstance(dist, CategoricalDistribution):
        return float(dist.choices.index(v)) if v in dist.choices else 0.0
    low, high = float(dist.low), float(dist.high)
    if high <= low:
        return 0.0
    if getattr(dist, "log", False):
        return (math.log(v) - math.log(low)) / (math.log(high) - math.log(low))
    return (float(v) - low) / (high - low)


def _distance(params: dict[str, Any], dists: dict[str, BaseDistribution], row: CurveRow) -> float:
    total = 0.0
    for name in (set(params) | set(row.params)) - {"scheduler"}:
        if name not in params or name not in row.params:
            total += 1.0
        elif isinstance(dists.get(name), CategoricalDistribution):
            total += float(params[name] != row.params[name])
        else:
            dist = dists.get(name) or row.distributions[name]
            total += (_scaled(params[name], dist) - _scaled(row.params[name], dist)) ** 2
    return math.sqrt(total)


@dataclass(frozen=True)
class SearchRun:
    epochs: np.ndarray  # cumulative epochs after each trial
    best: np.ndarray  # best completed final accuracy after each trial (nan before any)


def replay_search(cfg: StudyConfig, surrogate: Surrogate, trials: int,
                  make_sampler: Callable[[], optuna.samplers.BaseSampler],
                  make_pruner: Callable[[], optuna.pruners.BasePruner]) -> SearchRun:
    """`trials` trials of the study `cfg` (its space and enqueued defaults, never pruned, as
    `search.runner` runs them) with the given sampler and pruner, trained on `surrogate`."""
    study = _study(make_pruner(), make_sampler())
    if cfg.space.enqueue_defaults:
        for params in search_space.defaults(cfg.space, cfg.epochs):
            record.enqueue(study, record.Enqueued(default=True), params=params)
    spent, best = 0, -math.inf
    epochs, bests = np.zeros(trials), np.full(trials, math.nan)
    for n in range(trials):
        trial = study.ask()
        search_space.suggest(trial, cfg.space, cfg.epochs)
        curve = surrogate.curve(trial.params, trial.distributions)
        trained, pruned = _train_on(study, trial, curve, never_prune=record.of(trial).default)
        spent += trained
        if not pruned:
            best = max(best, float(curve[-1]))
        epochs[n], bests[n] = spent, best if best > -math.inf else math.nan
    return SearchRun(epochs, bests)


def halving(scores: dict[int, np.ndarray], costs: dict[int, float],
            reduction_factor: int) -> tuple[np.ndarray, float]:
    """Synchronous successive halving over rungs (ascending keys of `scores`).

    `scores[r][i]`: schedule i's score at rung r; `costs[r]`: epochs it costs one schedule to
    reach rung r from the rung before. Every schedule enters the first rung; the best
    1/reduction_factor (rounded up) of each rung go on. Returns (the schedules that reach the
    last rung, the epochs spent).
    """
    alive = np.arange(len(next(iter(scores.values()))))
    spent = 0.0
    rungs = sorted(scores)
    for j, r in enumerate(rungs):
        spent += costs[r] * len(alive)
        if j < len(rungs) - 1:
            keep = max(1, math.ceil(len(alive) / reduction_factor))
            alive = alive[np.argsort(-scores[r][alive], kind="stable")[:keep]]
    return alive, spent

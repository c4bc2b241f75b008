"""The companion study that `validate` writes next to a searched study, and reading it back.

`validate` re-trains a search's winners and baselines on new seeds and records every run in
the study `<searched>.validate` of the same storage. Everything that shows validation
results (`best`, `studies`, the report, the dashboard) names that study through
`companion_name` and reads it through `validation`; nothing here trains.
"""

from __future__ import annotations

import math
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search import compat, record, stats
from search.goal import Goal
from search.stats import Validation

__all__ = ["COMPANION_SUFFIX", "companion_name", "is_companion", "searched_name", "validation"]

COMPANION_SUFFIX = ".validate"


def companion_name(study_name: str) -> str:
    """The study holding the validation of `study_name`."""
    return study_name + COMPANION_SUFFIX


def is_companion(study_name: str) -> bool:
    """Whether `study_name` is a validation study (its trials are seeds, not a search)."""
    return study_name.endswith(COMPANION_SUFFIX)


def searched_name(companion: str) -> str:
    """The searched study a validation study belongs to."""
    return companion.removesuffix(COMPANION_SUFFIX)


def validation(study: optuna.Study, epochs: int | None = None,
               recommended: int | None = None, keys: set[str] | None = None,
               ) -> Validation | None:
    """What `validate` found for `study` in its companion study: the runs at `epochs` where
    there are any, else at the searched length. None where it never ran. `recommended`: the
    searched trial the study recommends (its validated result is the "winner" shown; the
    test split never changes which one that is). `keys`: the schedules to read (a contest's
    at one length: its LRs moved by the LR law, or kept), where others were validated too."""
    if is_companion(study.study_name):
        return None  # a validation study is not validated itself
    goal = Goal.of_study(study)  # the searched study's: its runs are scored the same way
    try:
        study = optuna.load_study(study_name=companion_name(study.study_name),
                                  storage=compat.storage_of(study))
    except KeyError:
        return None
    by_length: dict[int, list[FrozenTrial]] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        rec = record.of(t)
        if (rec.validate_key is not None and rec.holdout == "test" and rec.epochs is not None
                and rec.seed is not None and (keys is None or rec.validate_key in keys)):
            by_length.setdefault(rec.epochs, []).append(t)  # not LR sweeps
    if not by_length:
        return None
    attrs = record.study_of(study)
    searched = attrs.get(record.Study.SEARCHED_EPOCHS)
    length = next((e for e in (epochs, searched) if e in by_length),
                  max(by_length, key=lambda e: (len(by_length[e]), -e)))
    meta = record.validated(study)
    runs: dict[str, dict[str, Any]] = {}
    for t in sorted(by_length[length], key=lambda t: t.number):
        rec = record.of(t)
        r = runs.setdefault(rec.validate_key, {"trial": rec, "scores": {}, "diverged": []})
        seed = int(rec.seed)
        if seed in r["scores"] or seed in r["diverged"]:
            continue  # the first finished run of a (schedule, seed) counts
        if t.state == TrialState.COMPLETE and math.isfinite(value := record.value_of(t)):
            r["scores"][seed] = goal.score(value)
        elif rec.diverged:
            r["diverged"].append(seed)
    results = []
    for key, r in runs.items():
        m, rec = meta.get(key), r["trial"]
        if m is None:  # a store whose companion does not describe the key: the run's own tags
            m = record.Validated(label=rec.label, roles=rec.roles, source_trial=rec.source_trial)
        results.append(stats.Result(
            key=key, label=m.label if m.label is not None else key, roles=m.roles,
            scores=r["scores"], source_trial=m.source_trial, diverged=tuple(r["diverged"]),
            family=m.family, extra={"lr": m.lr, "lr_source": m.lr_source}))
    steps = sorted({s for t in by_length[length]
                    if (s := record.of(t).steps_per_epoch) is not None})
    return Validation(
        study=study.study_name, epochs=length, ranked=tuple(stats.rank(results)),
        other_epochs=tuple(sorted(set(by_length) - {length})),
        notes=tuple(attrs.get(record.Study.NOTES, ())),
        steps_per_epoch=steps[0] if len(steps) == 1 else 0,
        recommended_trial=recommended, searched_epochs=searched, goal=goal)

"""Every use of Optuna's private API, in one place; each has a test in tests/test_compat.py
that fails loudly when an Optuna release changes it (pyproject pins the tested major range).

- `CachedStorage`: optuna's cached RDB storage, which `storage.Resilient` extends so that
  every database call survives an outage (Optuna has no public hook for that).
- `stale_trial_ids`: RUNNING trials whose heartbeat is older than the grace period. The public
  `optuna.storages.fail_stale_trials` fails them, but leaves no way to record why
  (`end_reason` must be set before the trial is finished), so the claim sweep fails them itself.
- `storage_of`, `study_id`, `trial_id`: a study's storage and the ids the storage API takes
  (`optuna.Study` and `optuna.Trial` hold them as private attributes, with no public getter).
- `trials_without_heartbeat`: RUNNING trials that never recorded a heartbeat (their worker died
  before its first beat), read from optuna's RDB tables; Optuna never fails those.
- `TrialsView`: a study whose trials a sampler sees through a filter. Optuna's samplers read a
  study's trials through the private `Study._get_trials` (TPE's startup count, its good/bad
  split, the group search space), with no public hook to leave trials out.
"""

from __future__ import annotations

from typing import Any

import optuna
import sqlalchemy
from optuna.storages import _CachedStorage as CachedStorage

__all__ = ["CachedStorage", "TrialsView", "stale_trial_ids", "storage_of", "study_id", "trial_id",
           "trials_without_heartbeat"]


def storage_of(study: Any) -> optuna.storages.BaseStorage:
    """The storage an `optuna.Study` reads and writes."""
    return study._storage


def study_id(study: Any) -> int:
    """The id a study has in its storage (what the storage API takes)."""
    return study._study_id


def trial_id(trial: Any) -> int:
    """The storage id of an `optuna.Trial` (not its number)."""
    return trial._trial_id


def stale_trial_ids(store: Any, study_id: int) -> list[int]:
    """RUNNING trials of the study whose last heartbeat is older than the grace period."""
    return list(store._get_stale_trial_ids(study_id))


def trials_without_heartbeat(rdb: optuna.storages.RDBStorage, study_id: int) -> set[int]:
    """RUNNING trials of the study without any heartbeat row."""
    from optuna.storages._rdb import models

    t, h = models.TrialModel.__table__, models.TrialHeartbeatModel.__table__
    query = (sqlalchemy.select(t.c.trial_id)
             .select_from(t.outerjoin(h, h.c.trial_id == t.c.trial_id))
             .where(t.c.study_id == study_id, t.c.state == "RUNNING", h.c.trial_id.is_(None)))
    with rdb.engine.connect() as conn:
        return {row[0] for row in conn.execute(query)}


class TrialsView:
    """`study`, except that its trials are only those `keep(trial)` accepts (what a sampler
    reads through `_get_trials` and `get_trials`); everything else is the study's own."""

    def __init__(self, study: Any, keep: Any) -> None:
        self._study, self._keep = study, keep

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(self, deepcopy: bool = True, states: Any = None,
                    use_cache: bool = False) -> list[Any]:
        trials = self._study._get_trials(deepcopy=deepcopy, states=states, use_cache=use_cache)
        return [t for t in trials if self._keep(t)]

    def get_trials(self, deepcopy: bool = True, states: Any = None) -> list[Any]:
        return [t for t in self._study.get_trials(deepcopy=deepcopy, states=states)
                if self._keep(t)]

    @property
    def trials(self) -> list[Any]:
        return self.get_trials()

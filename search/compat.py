"""Every use of Optuna's private API (and optuna-dashboard's), in one place; each has a test in
tests/test_compat.py that fails loudly when a release changes it (pyproject pins the tested
major range), and a test there fails on a private use anywhere else in the tree.

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
- `fail_running`: fail a RUNNING trial and record why, as one compare-and-set in optuna's RDB
  tables. Through the public API the reason must be written before the state (a finished
  trial refuses attributes), so an owner finishing in between would keep the sweep's reason.
- `backend_of`, `rdb_of`, `url_of`: the storage under optuna's cache (`_CachedStorage._backend`)
  and its database URL.
- `set_study_system_attrs`: several study system attributes in one transaction, written into
  optuna's table (the API writes one per transaction: an interrupted save would be half done).
- `study_stand_in`, `saved_figures`: optuna-dashboard's figure writer reads a study's private
  `_storage` and `_study_id`, so a stand-in hands it a storage of our choosing; its reader of
  saved figures is private (`optuna_dashboard._custom_plot_data`).
- `count_trials`: trials per state, counted by the database. Optuna's `get_n_trials` is
  `len(get_all_trials())`: it loads every trial (and its curves) to count them.
- `insert_trials` (benchmarks): finished trials written straight into optuna's RDB tables, a
  study of 20,000 trials in seconds where `study.add_trials` takes many minutes.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import optuna
import sqlalchemy
from optuna.storages import BaseStorage
from optuna.storages import _CachedStorage as CachedStorage
from optuna.trial import FrozenTrial, TrialState

__all__ = ["CachedStorage", "TrialsView", "backend_of", "count_trials", "fail_running",
           "insert_trials",
           "rdb_of", "saved_figures", "set_study_system_attrs", "stale_trial_ids", "storage_of",
           "study_id", "study_stand_in", "trial_id", "trials_without_heartbeat", "url_of"]


def storage_of(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage an `optuna.Study` reads and writes."""
    return study._storage


def study_id(study: optuna.Study) -> int:
    """The id a study has in its storage (what the storage API takes)."""
    return study._study_id


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    """The storage id of an `optuna.Trial` (not its number)."""
    return trial._trial_id


def stale_trial_ids(store: BaseStorage, study_id: int) -> list[int]:
    """RUNNING trials of the study whose last heartbeat is older than the grace period."""
    # only a store with heartbeats (optuna's BaseHeartbeat) is asked (claim.beats)
    return list(store._get_stale_trial_ids(study_id))  # type: ignore[attr-defined]


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

    def __init__(self, study: optuna.Study, keep: Callable[[FrozenTrial], bool]) -> None:
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
def backend_of(store: BaseStorage) -> optuna.storages.BaseStorage:
    """The storage under optuna's cache (which wraps every RDBStorage a study opens), or
    `store` itself where it has no cache."""
    return store._backend if isinstance(store, CachedStorage) else store


def rdb_of(store: BaseStorage) -> optuna.storages.RDBStorage | None:
    """The RDBStorage under `store` (cached, resilient or bare), or None."""
    backend = backend_of(store)
    return backend if isinstance(backend, optuna.storages.RDBStorage) else None


def url_of(store: BaseStorage) -> str | None:
    """The database URL under `store` (password included: redact it before showing), or None
    for a store without a database."""
    rdb = rdb_of(store)
    return rdb.url if rdb is not None else None


def set_study_system_attrs(store: BaseStorage, study_id: int, attrs: Mapping[str, Any]) -> None:
    """Set every study system attribute of `attrs`: in one transaction on a database (all or
    none is written), one by one through the API elsewhere (nothing to interrupt in memory)."""
    rdb = rdb_of(store)
    if rdb is None:
        for key, value in attrs.items():
            store.set_study_system_attr(study_id, key, value)
        return
    from optuna.storages._rdb import models

    table = models.StudySystemAttributeModel.__table__
    with rdb.engine.begin() as conn:  # committed at the end, rolled back on any exception
        for key, value in attrs.items():
            where = (table.c.study_id == study_id) & (table.c.key == key)
            row = {"value_json": json.dumps(value)}  # as optuna stores an attribute
            if not conn.execute(sqlalchemy.update(table).where(where).values(row)).rowcount:
                conn.execute(sqlalchemy.insert(table).values(study_id=study_id, key=key, **row))


def study_stand_in(store: object, study_id: int) -> Any:
    """What optuna-dashboard's `save_plotly_graph_object` takes for a study: all it reads of
    one is the private `_storage` and `_study_id` (`store`: a storage, or anything that
    answers the storage calls that writer makes)."""
    return SimpleNamespace(_storage=store, _study_id=study_id)


def saved_figures(store: BaseStorage, study_id: int) -> dict[str, str]:
    """The figures saved into the study by optuna-dashboard's `save_plotly_graph_object`:
    graph object id -> the figure's JSON, as the dashboard reads them back."""
    from optuna_dashboard._custom_plot_data import get_plotly_graph_objects

    return get_plotly_graph_objects(store.get_study_system_attrs(study_id))


def count_trials(store: BaseStorage, study_id: int,
                 states: Sequence[TrialState]) -> dict[TrialState, int]:
    """How many trials of the study are in each of `states` (absent: none), from one counted
    query that loads no trial; a store without a database counts through the public API."""
    rdb = rdb_of(store)
    if rdb is None:
        trials = store.get_all_trials(study_id, deepcopy=False, states=tuple(states))
        return dict(Counter(t.state for t in trials))
    from optuna.storages._rdb import models

    t = models.TrialModel.__table__
    query = (sqlalchemy.select(t.c.state, sqlalchemy.func.count())
             .where(t.c.study_id == study_id, t.c.state.in_(list(states)))
             .group_by(t.c.state))
    with rdb.engine.connect() as conn:
        return {state: n for state, n in conn.execute(query)}  # the column reads TrialStates


def fail_running(store: BaseStorage, trial_id: int, user_attrs: dict[str, Any]) -> bool:
    """Fail the trial and set `user_attrs` on it if it is still RUNNING, in one transaction;
    False, and nothing written, where it is not (its owner finished it, or another worker
    failed it first). The database decides: no one can finish the trial in between.

    A store without a database is one process's (no worker of another process can finish the
    trial meanwhile): the public API, reason first.
    """
    rdb = rdb_of(store)
    if rdb is None:
        try:
            for key, value in user_attrs.items():
                store.set_trial_user_attr(trial_id, key, value)
            return bool(store.set_trial_state_values(trial_id, TrialState.FAIL))
        except optuna.exceptions.UpdateFinishedTrialError:
            return False
    from optuna.storages._rdb import models

    t, a = models.TrialModel.__table__, models.TrialUserAttributeModel.__table__
    with rdb.engine.begin() as conn:  # committed at the end, rolled back on any exception
        failed = conn.execute(
            sqlalchemy.update(t)
            .where(t.c.trial_id == trial_id, t.c.state == TrialState.RUNNING)
            .values(state=TrialState.FAIL, datetime_complete=_utc_now())
        ).rowcount
        if not failed:
            return False
        for key, value in user_attrs.items():
            conn.execute(sqlalchemy.delete(a).where(a.c.trial_id == trial_id, a.c.key == key))
            conn.execute(sqlalchemy.insert(a).values(trial_id=trial_id, key=key,
                                                     value_json=json.dumps(value)))
    return True


def _utc_now() -> datetime:
    """Now, as optuna's RDB tables hold a time: naive UTC (read back as local time)."""
    return datetime.now(UTC).replace(tzinfo=None)


def insert_trials(store: BaseStorage, study_id: int, values: Sequence[float],
                  user_attrs: Mapping[str, Any]) -> None:
    """Add COMPLETE trials with these values, each with `user_attrs`, in one transaction
    (numbered after the study's trials; no parameters). Benchmarks only: nothing is checked."""
    from optuna.storages._rdb import models

    rdb = rdb_of(store)
    assert rdb is not None, "insert_trials writes into an RDB store"
    t, v = models.TrialModel.__table__, models.TrialValueModel.__table__
    a = models.TrialUserAttributeModel.__table__
    now = _utc_now()
    with rdb.engine.begin() as conn:
        first = conn.execute(sqlalchemy.select(sqlalchemy.func.count())
                             .where(t.c.study_id == study_id)).scalar_one()
        ids = conn.execute(
            sqlalchemy.insert(t).returning(t.c.trial_id, sort_by_parameter_order=True),
            [{"number": first + i, "study_id": study_id, "state": TrialState.COMPLETE,
              "datetime_start": now, "datetime_complete": now} for i in range(len(values))],
        ).scalars().all()
        finite = models.TrialValueModel.TrialValueType.FINITE
        conn.execute(sqlalchemy.insert(v), [
            {"trial_id": i, "objective": 0, "value": x, "value_type": finite}
            for i, x in zip(ids, values, strict=True)])
        if user_attrs:
            conn.execute(sqlalchemy.insert(a), [
                {"trial_id": i, "key": key, "value_json": json.dumps(value)}
                for i in ids for key, value in user_attrs.items()])

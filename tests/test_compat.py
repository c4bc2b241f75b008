"""search.compat: every private Optuna API the project relies on, checked against the installed
Optuna. A failure here means an Optuna release changed it: fix search/compat.py first."""

from __future__ import annotations

import inspect
import threading
import time
import warnings
from datetime import datetime

import optuna
import pytest
from optuna.trial import TrialState
from workers_support import pg_url as pg_url  # noqa: F401 (fixture)

from search import compat, storage


@pytest.fixture
def hb_store(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        store = storage.open_storage(f"sqlite:///{tmp_path / 'c.db'}", heartbeat_interval=1,
                                     grace_period=1)
    yield store
    store.engine.dispose()


def test_cached_storage_wraps_a_backend_and_has_every_method_resilient_retries():
    params = inspect.signature(compat.CachedStorage.__init__).parameters
    assert list(params)[1:] == ["backend"]
    from search.storage.resilient import RETRIED

    assert len(RETRIED) > 15
    for name in RETRIED:
        assert callable(getattr(compat.CachedStorage, name)), name
    assert issubclass(compat.CachedStorage, optuna.storages.BaseStorage)


def test_resilient_reaches_its_backend(hb_store):
    wrapped = storage.resilient(hb_store)
    assert wrapped._backend is hb_store and storage.rdb_of(wrapped) is hb_store
    assert wrapped.get_heartbeat_interval() == 1


def test_stale_trial_ids_are_running_trials_past_the_grace_period(hb_store):
    study = optuna.create_study(storage=hb_store)
    sid = study._study_id
    stale, fresh = (hb_store.create_new_trial(sid) for _ in range(2))
    hb_store.record_heartbeat(stale)
    time.sleep(2.5)  # SQLite's timestamps count whole seconds: > 1 s grace for sure
    hb_store.record_heartbeat(fresh)
    assert compat.stale_trial_ids(hb_store, sid) == [stale]


def test_trials_without_heartbeat_are_the_running_ones_that_never_beat(hb_store):
    study = optuna.create_study(storage=hb_store)
    sid = study._study_id
    silent, beating, done = (hb_store.create_new_trial(sid) for _ in range(3))
    hb_store.record_heartbeat(beating)
    hb_store.set_trial_state_values(done, TrialState.FAIL)
    assert compat.trials_without_heartbeat(hb_store, sid) == {silent}


def test_study_and_trial_ids_and_storage(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'i.db'}")
    trial = study.ask()
    store = compat.storage_of(study)
    assert isinstance(store, optuna.storages.BaseStorage)
    assert store.get_study_id_from_name(study.study_name) == compat.study_id(study)
    assert store.get_trial(compat.trial_id(trial)).number == trial.number == 0


@pytest.fixture(params=["sqlite", "postgresql"])
def any_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'f.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def far_from_utc(monkeypatch):
    """Local time 9 hours off UTC: optuna stores naive UTC and reads it back as local time."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_fail_running_fails_only_a_running_trial_and_sets_its_reason_with_it(
    any_url, far_from_utc
):
    store = storage.resilient(any_url)
    study = optuna.create_study(storage=store)
    running, finished = study.ask(), study.ask()
    running.set_user_attr("default", True)
    finished.set_user_attr("end_reason", "pruned")
    study.tell(finished, state=TrialState.PRUNED)
    assert compat.fail_running(store, compat.trial_id(running), {"end_reason": "worker_lost"})
    t = store.get_trial(compat.trial_id(running))
    assert t.state == TrialState.FAIL
    assert abs((t.datetime_complete - datetime.now()).total_seconds()) < 60  # as optuna's
    assert t.user_attrs == {"default": True, "end_reason": "worker_lost"}
    # no longer RUNNING: nothing is written, whoever ended it keeps its reason
    assert not compat.fail_running(store, compat.trial_id(running), {"end_reason": "other"})
    assert not compat.fail_running(store, compat.trial_id(finished), {"end_reason": "other"})
    assert store.get_trial(compat.trial_id(running)).user_attrs["end_reason"] == "worker_lost"
    f = store.get_trial(compat.trial_id(finished))
    assert f.state == TrialState.PRUNED and f.user_attrs == {"end_reason": "pruned"}
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.PRUNED]
    compat.rdb_of(store).engine.dispose()


def test_fail_running_waits_for_a_tell_in_flight_and_then_leaves_the_trial(pg_url):  # noqa: F811
    """PostgreSQL: the owner's tell holds the trial's row; the compare-and-set waits for it and
    finds the trial finished, whenever it starts."""
    store = storage.resilient(pg_url)
    study = optuna.create_study(storage=store)
    tid = compat.trial_id(study.ask())
    rdb, result = compat.rdb_of(store), []
    with rdb.engine.connect() as owner:
        owner.exec_driver_sql(f"SELECT * FROM trials WHERE trial_id = {tid} FOR UPDATE")
        owner.exec_driver_sql(f"UPDATE trials SET state = 'COMPLETE' WHERE trial_id = {tid}")
        sweep = threading.Thread(target=lambda: result.append(
            compat.fail_running(store, tid, {"end_reason": "worker_lost"})))
        sweep.start()
        sweep.join(0.5)  # blocked on the row (or not started yet): the outcome is the same
        owner.commit()
    sweep.join(10)
    assert result == [False]
    t = store.get_trial(tid)
    assert t.state == TrialState.COMPLETE and "end_reason" not in t.user_attrs
    rdb.engine.dispose()


def test_backend_and_rdb_of_reach_under_optunas_cache(hb_store):
    study = optuna.create_study(storage=hb_store)  # optuna wraps it in its cache
    cached = compat.storage_of(study)
    assert isinstance(cached, compat.CachedStorage) and cached is not hb_store
    assert compat.backend_of(cached) is hb_store and compat.rdb_of(cached) is hb_store
    assert compat.rdb_of(storage.resilient(hb_store)) is hb_store
    memory = optuna.storages.InMemoryStorage()
    assert compat.backend_of(memory) is memory and compat.rdb_of(memory) is None


def test_insert_trials_adds_complete_trials_optuna_reads_back(any_url, far_from_utc):
    store = storage.resilient(any_url)
    study = optuna.create_study(storage=store, direction="maximize")
    study.tell(study.ask(), 0.1)
    compat.insert_trials(store, compat.study_id(study), [0.5, 0.7], {"val_acc_curve": [0.5]})
    trials = optuna.load_study(study_name=study.study_name, storage=any_url).trials
    assert [(t.number, t.state, t.value) for t in trials[1:]] == [
        (1, TrialState.COMPLETE, 0.5), (2, TrialState.COMPLETE, 0.7)]
    assert trials[2].user_attrs == {"val_acc_curve": [0.5]}
    assert abs((trials[2].datetime_complete - datetime.now()).total_seconds()) < 60
    assert study.best_value == 0.7
    study.tell(study.ask(), 0.2)  # optuna numbers and ids the next trial after them
    assert [t.number for t in study.trials] == [0, 1, 2, 3]
    compat.rdb_of(store).engine.dispose()


def test_count_trials_counts_the_states_asked_for_like_the_public_api(any_url):
    stores = [storage.resilient(any_url), optuna.storages.InMemoryStorage()]
    counts = []
    for store in stores:
        study = optuna.create_study(storage=store)
        for state in (TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED):
            study.tell(study.ask(), 0.5 if state == TrialState.COMPLETE else None, state=state)
        study.ask()
        study.enqueue_trial({})
        counts.append(compat.count_trials(store, compat.study_id(study),
                                          (TrialState.COMPLETE, TrialState.FAIL,
                                           TrialState.RUNNING)))
    assert counts[0] == counts[1] == {TrialState.COMPLETE: 2, TrialState.RUNNING: 1}
    compat.rdb_of(stores[0]).engine.dispose()

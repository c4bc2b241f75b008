"""search.compat: every private Optuna API the project relies on, checked against the installed
Optuna. A failure here means an Optuna release changed it: fix search/compat.py first."""

from __future__ import annotations

import inspect
import time
import warnings

import optuna
import pytest
from optuna.trial import TrialState

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

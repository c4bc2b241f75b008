"""search.compat: every private Optuna API the project relies on, checked against the installed
Optuna. A failure here means an Optuna release changed it: fix search/compat.py first."""

from __future__ import annotations

import ast
import inspect
import json
import threading
import time
import warnings
from datetime import datetime
from pathlib import Path

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
    assert compat.backend_of(wrapped) is hb_store and compat.rdb_of(wrapped) is hb_store
    assert wrapped.get_heartbeat_interval() == 1


def test_stale_trial_ids_are_running_trials_past_the_grace_period(hb_store):
    study = optuna.create_study(storage=hb_store)
    sid = compat.study_id(study)
    stale, fresh = (hb_store.create_new_trial(sid) for _ in range(2))
    hb_store.record_heartbeat(stale)
    time.sleep(2.5)  # SQLite's timestamps count whole seconds: > 1 s grace for sure
    hb_store.record_heartbeat(fresh)
    assert compat.stale_trial_ids(hb_store, sid) == [stale]


def test_trials_without_heartbeat_are_the_running_ones_that_never_beat(hb_store):
    study = optuna.create_study(storage=hb_store)
    sid = compat.study_id(study)
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


def test_url_of_is_the_database_url_under_the_cache(tmp_path):
    url = f"sqlite:///{tmp_path / 'u.db'}"
    assert compat.url_of(compat.storage_of(optuna.create_study(storage=url))) == url
    assert compat.url_of(storage.resilient(url)) == url
    assert compat.url_of(optuna.storages.InMemoryStorage()) is None


def test_set_study_system_attrs_writes_all_or_none(any_url):
    db = storage.resilient(any_url)
    for store in (db, optuna.storages.InMemoryStorage()):
        sid = compat.study_id(optuna.create_study(storage=store))
        compat.set_study_system_attrs(store, sid, {"a": 1, "b": [2, "x"]})
        compat.set_study_system_attrs(store, sid, {"a": 3})  # replaced, "b" kept
        assert store.get_study_system_attrs(sid) == {"a": 3, "b": [2, "x"]}
    sid = compat.study_id(optuna.create_study(storage=db))
    with pytest.raises(TypeError):  # the second value cannot be stored: neither is
        compat.set_study_system_attrs(db, sid, {"c": 1, "d": object()})
    assert db.get_study_system_attrs(sid) == {}
    compat.rdb_of(db).engine.dispose()


def test_optuna_dashboards_writer_writes_through_the_stand_in_and_its_reader_reads_back(tmp_path):
    import plotly.graph_objects as go
    from optuna_dashboard import save_plotly_graph_object

    store = storage.resilient(f"sqlite:///{tmp_path / 'd.db'}")
    sid = compat.study_id(optuna.create_study(storage=store))
    collected: dict = {}

    class Collecting:  # what the writer may call on a study's storage
        def get_study_system_attrs(self, study_id):
            return {}

        def set_study_system_attr(self, study_id, key, value):
            assert study_id == sid
            collected[key] = value

    figure = go.Figure(go.Scatter(x=[1, 2], y=[3, 4]))
    save_plotly_graph_object(compat.study_stand_in(Collecting(), sid), figure,
                             graph_object_id="g")
    assert collected and store.get_study_system_attrs(sid) == {}  # nothing written yet
    compat.set_study_system_attrs(store, sid, collected)
    saved = compat.saved_figures(store, sid)
    assert list(saved) == ["g"] and json.loads(saved["g"]) == json.loads(figure.to_json())


# Every private use of Optuna (or optuna-dashboard) goes through search/compat.py, where each is
# tested above. The scan covers the project's code and its tests alike: a test reaching into
# Optuna breaks on an Optuna release as surely as the code does. Found through the syntax tree
# (docstrings and comments may name private things): imports of private modules or names, and
# attributes that are private on Optuna's own objects (their names are read from the installed
# Optuna). A file's own private attributes (`self._lock = ...`) are its own, not Optuna's.
SCANNED = ("search", "dashboards", "benchmarks", "objectives", "tests")
PLACE = Path("search") / "compat.py"


def optuna_private_names() -> set[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.create_study(storage="sqlite:///:memory:")
        study.tell(study.ask(), 1.0)
        store = compat.storage_of(study)
        objects = [study, study.ask(), study.trials[0], store, compat.backend_of(store),
                   optuna.storages.InMemoryStorage(), optuna.samplers.TPESampler(),
                   optuna.samplers.RandomSampler(), optuna.pruners.MedianPruner(),
                   optuna.pruners.HyperbandPruner(),
                   optuna.distributions.FloatDistribution(0.0, 1.0)]
    names = set()
    for o in objects:
        names |= {n for n in [*vars(o), *dir(type(o))] if n.startswith("_")
                  and not n.startswith("__")}
    return names


def private_optuna_uses(root: Path, private: set[str]) -> list[str]:
    found = []
    for path in sorted(p for d in SCANNED for p in (root / d).rglob("*.py")):
        if path.relative_to(root) == PLACE:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        own = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)
               and isinstance(n.ctx, ast.Store)}
        for node in ast.walk(tree):
            what = None
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in (
                    "optuna", "optuna_dashboard"):
                parts = [*node.module.split("."), *(a.name for a in node.names)]
                what = node.module if any(p.startswith("_") for p in parts) else None
            elif isinstance(node, ast.Import):
                what = next((a.name for a in node.names if a.name.split(".")[0] in (
                    "optuna", "optuna_dashboard") and "._" in a.name), None)
            elif (isinstance(node, ast.Attribute) and node.attr in private
                  and node.attr not in own):
                what = ast.unparse(node)
            elif isinstance(node, ast.Call):  # getattr(x, "_backend"), Namespace(_storage=...)
                names = [*(a.value for a in node.args if isinstance(a, ast.Constant)),
                         *(k.arg for k in node.keywords)]
                what = next((f"{ast.unparse(node.func)}(... {n} ...)" for n in names
                             if n in private and n not in own), None)
            if what:
                found.append((str(path.relative_to(root)), node.lineno, what))
    return [f"{path}:{line}: {what}" for path, line, what in sorted(found)]


def test_no_private_optuna_use_outside_compat():
    root = Path(__file__).resolve().parents[1]
    assert private_optuna_uses(root, optuna_private_names()) == []


def test_the_scan_finds_each_kind_of_private_use(tmp_path):
    (tmp_path / "search").mkdir()
    (tmp_path / "search" / "bad.py").write_text(
        "from optuna.storages import _CachedStorage\n"
        "import optuna.storages._rdb.models\n"
        "from optuna_dashboard._custom_plot_data import get_plotly_graph_objects\n"
        "sid = study._study_id\n"
        "class Mine:\n"
        "    def __init__(self):\n"
        "        self._lock = None\n"  # its own attribute, though Optuna has one too
        "    def f(self):\n"
        "        return self._lock, self._backend\n"
        "stand_in = Namespace(_storage=store)\n"
        "backend = getattr(store, '_backend', store)\n")
    found = private_optuna_uses(tmp_path, optuna_private_names())
    assert [f.split(": ", 1)[1] for f in found] == [
        "optuna.storages", "optuna.storages._rdb.models", "optuna_dashboard._custom_plot_data",
        "study._study_id", "self._backend", "Namespace(... _storage ...)",
        "getattr(... _backend ...)"]

"""The worker loop: exact targets, dead workers' trials retried, stolen trials, GPUs, SQLite.

PostgreSQL scenarios (kill -9, dropped connections, an outage, SIGTERM) are in
test_postgres.py; these run on SQLite and need no server.
"""

from __future__ import annotations

import logging
import threading
import time

import optuna
import pytest
from optuna.trial import TrialState
from workers_support import check_exact, finish, start, write_study

from search import compat, runner, space
from search.config import load_study
from search.engine import claim, sequential, workers
from search.errors import UserError

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.mark.parametrize("jobs, per_gpu, gpus, plan", [
    (4, 1, ["0", "1", "2", "3"], ["0", "1", "2", "3"]),
    (4, 2, ["0", "1"], ["0", "1", "0", "1"]),
    (3, 3, ["5"], ["5", "5", "5"]),
    (3, 1, [], [None, None, None]),  # no GPU: every worker on the CPU
])
def test_workers_are_spread_over_the_gpus(jobs, per_gpu, gpus, plan):
    assert workers.gpu_plan(jobs, per_gpu, gpus) == plan


def test_more_workers_than_gpu_slots_is_refused():
    with pytest.raises(UserError, match=r"`--jobs` must be at most 2 GPUs x --workers-per-gpu "
                                        r"1 = 2 but got 3; raise --workers-per-gpu"):
        workers.gpu_plan(3, 1, ["0", "1"])


def test_cpu_device_uses_no_gpu():
    assert workers.visible_gpus("cpu") == []


def _setup(tmp_path, trials: int, grace: int = 2):
    cfg = load_study(str(write_study(tmp_path, trials=trials, sleep=0.01, grace=grace)))
    url = f"sqlite:///{tmp_path / 'search.db'}"
    store = claim.open_for(cfg.workers, url)
    return cfg, url, store, runner.create_or_load(cfg, store)


def _running_trial(study, cfg, heartbeat: bool) -> optuna.trial.FrozenTrial:
    """A trial some other worker started and then died running (with or without a beat)."""
    store = compat.storage_of(study)
    tid = store.create_new_trial(compat.study_id(study))
    space.suggest(optuna.Trial(study, tid), cfg.space, cfg.epochs)
    if heartbeat:
        store.record_heartbeat(tid)
    return store.get_trial(tid)


@pytest.mark.parametrize("heartbeat", [True, False], ids=["stale", "no-heartbeat"])
def test_a_dead_workers_trial_is_failed_and_retried_and_the_total_stays_exact(
    tmp_path, heartbeat
):
    cfg, url, store, study = _setup(tmp_path, trials=3)
    dead = _running_trial(study, cfg, heartbeat)
    began = time.monotonic()
    sequential.run(cfg, store, 3)
    # it waited for the grace period (2 s; twice that without any heartbeat) instead of
    # giving up on a trial that might still be alive
    assert time.monotonic() - began > (2 if heartbeat else 4)
    ts = check_exact(url, 3)
    failed = ts[dead.number]
    assert failed.state == TrialState.FAIL and failed.user_attrs["end_reason"] == "worker_lost"
    (retry,) = [t for t in ts if t.system_attrs.get("failed_trial") == dead.number]
    assert retry.state == TrialState.COMPLETE and retry.params == dead.params
    assert "end_reason" not in retry.user_attrs and retry.number > dead.number


@pytest.mark.parametrize("when", ["during", "after"])
def test_a_trial_failed_by_another_worker_does_not_crash_this_one(
    tmp_path, monkeypatch, caplog, when
):
    """What optuna's own loop dies of ("Should not reach" / "Cannot tell a FAIL trial")."""
    cfg, url, store, study = _setup(tmp_path, trials=3)
    real, stolen = runner.make_objective, []

    def make_objective(cfg, on_epoch=None):
        objective = real(cfg, on_epoch)

        def steal(trial):  # another worker's sweep fails this live trial as stale
            if not stolen:
                stolen.append(trial.number)
                compat.storage_of(trial.study).set_trial_state_values(
                    compat.trial_id(trial), TrialState.FAIL)

        def run(trial):
            if when == "during":
                steal(trial)
            value = objective(trial)
            if when == "after":
                steal(trial)
            return value

        return run

    monkeypatch.setattr(runner, "make_objective", make_objective)
    with caplog.at_level(logging.WARNING):
        sequential.run(cfg, store, 3)
    ts = check_exact(url, 3)
    assert [t.number for t in ts if t.state == TrialState.FAIL] == stolen
    assert f"trial {stolen[0]} was failed by another worker" in caplog.text


def test_runs_resume_to_the_total_counting_every_worker(tmp_path):
    cfg, url, store, study = _setup(tmp_path, trials=2)
    sequential.run(cfg, store, 2)
    sequential.run(cfg, store, 2)  # already there: nothing more
    check_exact(url, 2)
    sequential.run(cfg, store, 4)
    ts = check_exact(url, 4)
    # each run drew its own sampler stream, so a second worker never repeats the first
    attrs = store.get_study_system_attrs(compat.study_id(study))
    assert attrs["workers_started"] == 3 and len(ts) == 4


def test_sqlite_four_workers_and_a_polling_reader(tmp_path):
    """No "database is locked" reaches a worker while a dashboard-like reader polls."""
    study = write_study(tmp_path, trials=24)
    url = f"sqlite:///{tmp_path / 'search.db'}"
    proc = start("run", "--study", str(study), "--jobs", "4", "--storage", url, cwd=tmp_path)
    stop, reads = threading.Event(), []

    def read() -> None:  # what optuna-dashboard does: summaries and every trial, again and again
        reader = optuna.storages.RDBStorage(url)
        while not stop.is_set():
            try:
                optuna.get_all_study_summaries(reader)
                reads.append(len(optuna.load_study(study_name="fast", storage=reader).trials))
            except (KeyError, optuna.exceptions.StorageInternalError):
                pass  # not created yet / the reader's own bad luck: not what is tested here
            time.sleep(0.05)

    thread = threading.Thread(target=read)
    thread.start()
    try:
        code, out, err = finish(proc, 240)
    finally:
        stop.set()
        thread.join()
    assert code == 0, err
    assert "locked" not in err and "unreachable" not in err and "Traceback" not in err
    check_exact(url, 24)
    assert len(reads) > 10 and max(reads) >= 24

"""search.engine.claim: the claim protocol, one step at a time on a real SQLite store.

Which trials are stale is decided by the clock (heartbeats older than the grace period); the
tests here name the stale trial themselves (`compat.stale_trial_ids` patched), so every
interleaving they check happens in a fixed order, without waiting or timing luck.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
import threading

import optuna
import pytest
import sqlalchemy.exc
from optuna.trial import TrialState
from test_runner import counted_queries, fill

from search import compat, runner, storage
from search.config import WorkersConfig
from search.engine import claim
from search.errors import UserError

optuna.logging.set_verbosity(optuna.logging.WARNING)


class AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study, trial) -> bool:
        return True


@pytest.fixture
def study(tmp_path):
    store = claim.open_for(WorkersConfig(heartbeat_interval=1, grace_period=2),
                           f"sqlite:///{tmp_path / 'c.db'}")
    yield optuna.create_study(storage=store, direction="maximize", pruner=AlwaysPrune())
    compat.rdb_of(store).engine.dispose()


def _lost(monkeypatch, *trials: optuna.Trial) -> None:
    """The next sweep finds these trials stale (their worker died), once."""
    ids = [compat.trial_id(t) for t in trials]
    monkeypatch.setattr(compat, "stale_trial_ids", lambda store, sid: [ids.pop() for _ in ids[:]])


TRAINED = {"val_acc_curve": [0.5], "lr_curve": [0.1], "lr_trace": {"every": 1, "lr": [0.1]},
           "schedule": {"family": "Constant", "lr": 0.1}, "epochs": 9, "end_reason": "pruned"}


@pytest.mark.parametrize("enqueued", [
    {"default": True},  # a known-good default: never pruned
    {"validate_key": "cosine", "seed": 3, "epochs": 4, "holdout": "val"},  # a validation run
], ids=["default", "validate"])
def test_a_retry_keeps_the_enqueued_user_attrs_and_drops_what_training_wrote(
    study, monkeypatch, enqueued
):
    study.enqueue_trial({"x": 1.0}, user_attrs=enqueued)
    claimer = claim.Claimer(study, grace_s=2)
    trial = claimer.claim(claim.Count(1))
    trial.suggest_float("x", 0.0, 2.0)
    for key, value in TRAINED.items():  # what training records ("epochs" overwritten too)
        trial.set_user_attr(key, value)
    _lost(monkeypatch, trial)
    claimer.sweep()
    dead, retry = study.trials
    assert dead.state == TrialState.FAIL and dead.user_attrs["end_reason"] == "worker_lost"
    assert retry.state == TrialState.WAITING and retry.params == {"x": 1.0}
    assert retry.user_attrs == enqueued
    # claimed again and lost again: the second retry still carries exactly the same
    again = claimer.claim(claim.Count(1))
    assert again.number == retry.number and again.user_attrs == enqueued
    again.set_user_attr("val_acc_curve", [0.4])
    _lost(monkeypatch, again)
    claimer.sweep()
    assert study.trials[-1].user_attrs == enqueued
    if enqueued.get("default"):  # the pruner prunes everything, but never a default
        runner.Recorder(claimer.claim(claim.Count(1)))(0, 1.0, 0.5, 0.1)


@pytest.mark.parametrize("owner_ends", ["before", "after"])
def test_the_state_change_decides_between_the_sweep_and_a_slow_owner(
    study, monkeypatch, owner_ends
):
    """The owner (slow, alive) ends its trial as pruned just before, or just after, the sweep
    fails it as stale: whoever changes the state first keeps its state and its reason."""
    claimer = claim.Claimer(study, grace_s=2)
    trial = claimer.claim(claim.Count(1))
    tid = compat.trial_id(trial)
    runner.Recorder(trial).end("pruned")  # the owner's decision; its tell is under way
    told: list = []

    def owner() -> None:
        told.append(claim.conclude(study, tid, TrialState.PRUNED, None))

    def at_the_decision(decide):  # the sweep's state change, whichever call makes it
        def call(*args, **kwargs):
            if owner_ends == "before" and not told:
                owner()
            decided = decide(*args, **kwargs)
            if owner_ends == "after" and not told:
                owner()
            return decided
        return call

    store = compat.storage_of(study)
    set_state = store.set_trial_state_values
    monkeypatch.setattr(store, "set_trial_state_values", lambda t, state, values=None: (
        at_the_decision(set_state) if state == TrialState.FAIL else set_state)(t, state, values))
    if hasattr(compat, "fail_running"):
        monkeypatch.setattr(compat, "fail_running", at_the_decision(compat.fail_running))
    _lost(monkeypatch, trial)
    claimer.sweep()
    ended = study.trials[trial.number]
    if owner_ends == "before":  # the owner's tell won: no retry, its reason kept
        assert told[0].state == TrialState.PRUNED
        assert ended.state == TrialState.PRUNED and ended.user_attrs["end_reason"] == "pruned"
        assert len(study.trials) == 1
    else:  # the sweep won: the owner's tell is refused and the retry runs instead
        assert told == [None]
        assert ended.state == TrialState.FAIL and ended.user_attrs["end_reason"] == "worker_lost"
        assert [t.state for t in study.trials[1:]] == [TrialState.WAITING]


def test_failing_heartbeats_are_logged_once_per_kind_with_the_password_hidden(caplog):
    url = "postgresql+psycopg://me:s3cret@db.example/search"
    faults = [sqlalchemy.exc.OperationalError("UPDATE trial_heartbeats", {},
                                              Exception(f"server at {url} closed the connection"))
              ] * 3 + [OSError(errno.ENOSPC, "No space left on device")] * 3
    beats, done = [], threading.Event()

    class Store:  # beats every 10 ms; the first six writes fail, in two kinds
        def get_heartbeat_interval(self):
            return 0.01

        def record_heartbeat(self, trial_id):
            beats.append(trial_id)
            if len(beats) <= len(faults):
                raise faults[len(beats) - 1]
            done.set()

    Store.url = url
    with caplog.at_level(logging.WARNING, logger="search.engine"):
        beat = claim.Heartbeat(Store(), 7)
        assert done.wait(10)
        beat.stop()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "OperationalError" in lines[0] and "OSError" in lines[1]
    assert all("heartbeat" in line and "me:***@db.example" in line for line in lines)
    assert "s3cret" not in caplog.text


def test_a_store_that_refuses_the_result_ends_the_trial_as_storage_error(study, monkeypatch):
    trial = claim.Claimer(study, grace_s=2).claim(claim.Count(1))
    store = compat.storage_of(study)
    refuse = sqlite3.OperationalError("database or disk is full")
    monkeypatch.setattr(store, "set_trial_state_values", lambda *a, **k: (_ for _ in ()).throw(
        refuse))  # the tell's write; the close goes around the cache, without retries
    with pytest.raises(UserError, match="refuses writes .*the trial in flight ended as FAIL"):
        claim.conclude(study, compat.trial_id(trial), TrialState.COMPLETE, 0.5)
    t = study.trials[0]
    assert t.state == TrialState.FAIL and t.user_attrs["end_reason"] == "storage_error"


def test_finished_and_running_are_counted_by_one_query_that_loads_no_trial(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    fill(optuna.create_study(study_name="s", storage=url))
    store = storage.resilient(url)
    study = optuna.load_study(study_name="s", storage=store)  # a fresh worker: nothing cached
    with counted_queries(store) as statements:
        assert claim.finished_and_running(study) == (3, 1)  # complete + pruned; running
    assert len(statements) == 1
    memory = optuna.create_study()
    fill(memory)
    assert claim.finished_and_running(memory) == (3, 1)


def test_every_claim_policy_satisfies_the_protocol_and_one_function_chooses_it():
    """Count, the contest's policy and validate's satisfy claim.ClaimPolicy (structurally:
    isinstance through runtime_checkable, and the methods' parameters), and `policy_for` is
    what both loops call: the contest's policy for a contest study, else Count."""
    import dataclasses
    import inspect

    from search import config
    from search.contest.policy import ContestPolicy
    from search.validation import validate

    cfg = config.load_study("lr-fashion")
    assert cfg.contest is not None
    policies = [claim.Count(3), ContestPolicy(cfg, 3), validate._Runs({}, [], "s")]
    for policy in policies:
        assert isinstance(policy, claim.ClaimPolicy), type(policy).__name__
        assert list(inspect.signature(policy).parameters) == ["study", "live"]
        assert list(inspect.signature(policy.next_run).parameters) == []
        if policy.wanted is not None:
            assert list(inspect.signature(policy.wanted).parameters) == ["trial"]
    assert not isinstance(object(), claim.ClaimPolicy)

    chosen = claim.policy_for(cfg, 7)
    assert isinstance(chosen, ContestPolicy) and chosen.target == 7
    plain = claim.policy_for(dataclasses.replace(cfg, contest=None), 7, own=lambda: 2)
    assert type(plain) is claim.Count and plain.target == 7 and plain.own() == 2

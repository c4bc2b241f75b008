"""search.engine.claim: the claim protocol, one step at a time on a real SQLite store.

Which trials are stale is decided by the clock (heartbeats older than the grace period); the
tests here name the stale trial themselves (`compat.stale_trial_ids` patched), so every
interleaving they check happens in a fixed order, without waiting or timing luck.
"""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from search import compat, runner, storage
from search.config import WorkersConfig
from search.engine import claim

optuna.logging.set_verbosity(optuna.logging.WARNING)


class AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study, trial) -> bool:
        return True


@pytest.fixture
def study(tmp_path):
    store = claim.open_for(WorkersConfig(heartbeat_interval=1, grace_period=2),
                           f"sqlite:///{tmp_path / 'c.db'}")
    yield optuna.create_study(storage=store, direction="maximize", pruner=AlwaysPrune())
    storage.rdb_of(store).engine.dispose()


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

"""search.engine.sequential: one claimed trial, trained and concluded in the store."""

from __future__ import annotations

import os
import signal

import optuna
import pytest
from optuna.trial import TrialState
from workers_support import write_study

from search import compat, runner
from search.config import WorkersConfig, load_study
from search.engine import claim, sequential
from search.engine.signals import Signals

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture
def claimed(tmp_path):
    store = claim.open_for(WorkersConfig(heartbeat_interval=1, grace_period=2),
                           f"sqlite:///{tmp_path / 's.db'}")
    study = optuna.create_study(storage=store, direction="maximize")
    yield study, claim.Claimer(study, grace_s=2).claim(claim.Count(1))
    compat.rdb_of(store).engine.dispose()


def spy_heartbeats(monkeypatch, module) -> list[claim.Heartbeat]:
    started: list[claim.Heartbeat] = []

    class Spy(claim.Heartbeat):
        def __init__(self, *args) -> None:
            super().__init__(*args)
            started.append(self)

    monkeypatch.setattr(module, "Heartbeat", Spy)
    return started


@pytest.mark.parametrize("stored", [True, False], ids=["stored", "store-fails"])
def test_the_heartbeat_beats_until_the_result_is_stored(claimed, monkeypatch, stored):
    """Storing the result may take a while (a database that is away is waited for): the trial
    must not look dead meanwhile, or another worker fails and retries a finished trial."""
    study, trial = claimed
    beats, beating = spy_heartbeats(monkeypatch, claim), []
    real = claim.conclude

    def conclude(*args, **kwargs):
        beating.append(not beats[0].stop_event.is_set())
        if not stored:
            raise OSError("the store is gone")
        return real(*args, **kwargs)

    monkeypatch.setattr(claim, "conclude", conclude)
    if stored:
        assert sequential.run_trial(study, trial, lambda t: 0.5, Signals()).value == 0.5
    else:
        with pytest.raises(OSError):
            sequential.run_trial(study, trial, lambda t: 0.5, Signals())
    assert beating == [True]  # still beating while the result was being stored
    assert beats[0].stop_event.is_set()  # and stopped after, whatever happened
    if stored:
        assert study.trials[0].state == TrialState.COMPLETE


def test_sigterm_while_the_study_opens_returns_it_with_nothing_trained(tmp_path, monkeypatch):
    """The signal is noted while the study opens (no store call is cut) and the loop never
    starts: the study opened is returned, there is no other ending to fall back on."""
    cfg = load_study(str(write_study(tmp_path, trials=3)))
    real = runner.create_or_load

    def opening(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "create_or_load", opening)
    before = signal.getsignal(signal.SIGTERM)
    study = sequential.work(cfg, f"sqlite:///{tmp_path / 's.db'}", 3)
    assert study.study_name == "fast" and study.trials  # the enqueued defaults
    assert {t.state for t in study.trials} == {TrialState.WAITING}  # none claimed
    assert signal.getsignal(signal.SIGTERM) == before

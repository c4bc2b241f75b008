"""search.engine.sequential: one claimed trial, trained and concluded in the store."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from search import compat
from search.config import WorkersConfig
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
    beats, beating = spy_heartbeats(monkeypatch, sequential), []
    real = sequential.conclude

    def conclude(*args, **kwargs):
        beating.append(not beats[0].stop_event.is_set())
        if not stored:
            raise OSError("the store is gone")
        return real(*args, **kwargs)

    monkeypatch.setattr(sequential, "conclude", conclude)
    if stored:
        assert sequential.run_trial(study, trial, lambda t: 0.5, Signals()).value == 0.5
    else:
        with pytest.raises(OSError):
            sequential.run_trial(study, trial, lambda t: 0.5, Signals())
    assert beating == [True]  # still beating while the result was being stored
    assert beats[0].stop_event.is_set()  # and stopped after, whatever happened
    if stored:
        assert study.trials[0].state == TrialState.COMPLETE

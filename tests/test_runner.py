"""search.engine.claim.count and the study wiring: trials counted without loading them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from search import compat, storage
from search.engine import claim

optuna.logging.set_verbosity(optuna.logging.WARNING)

STATES = [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL,
          TrialState.RUNNING]


def fill(study: optuna.Study) -> None:
    for state in STATES:
        trial = study.ask()
        trial.set_user_attr("val_acc_curve", [0.5] * 30)
        if state != TrialState.RUNNING:
            study.tell(trial, 0.5 if state == TrialState.COMPLETE else None, state=state)
    study.enqueue_trial({})  # WAITING


@pytest.mark.parametrize("where", ["sqlite", "memory"])
def test_counts_by_state(tmp_path, where):
    store = (storage.resilient(f"sqlite:///{tmp_path / 'r.db'}") if where == "sqlite"
             else optuna.storages.InMemoryStorage())
    study = optuna.create_study(storage=store)
    fill(study)
    assert claim.count(study) == 3  # finished: complete and pruned
    assert claim.count(study, (TrialState.FAIL, TrialState.WAITING)) == 2
    assert claim.count(study, tuple(TrialState)) == len(STATES) + 1


def test_counting_loads_no_trial(tmp_path):
    """A worker counts under the claim lock before every claim: one counted query, however
    many trials (and curves) the study holds."""
    url = f"sqlite:///{tmp_path / 'r.db'}"
    fill(optuna.create_study(study_name="s", storage=url))
    store = storage.resilient(url)
    study = optuna.load_study(study_name="s", storage=store)  # a fresh worker: nothing cached
    with counted_queries(store) as statements:
        assert claim.count(study) == 3
    assert len(statements) == 1, statements


@contextmanager
def counted_queries(store) -> Iterator[list[str]]:
    """The SQL statements sent meanwhile; each must be a count that reads no trial's data."""
    statements: list[str] = []

    def seen(conn, cursor, statement, *rest) -> None:
        statements.append(statement)

    engine = compat.rdb_of(store).engine
    sqlalchemy.event.listen(engine, "before_cursor_execute", seen)
    try:
        yield statements
    finally:
        sqlalchemy.event.remove(engine, "before_cursor_execute", seen)
    assert all("count(" in s.lower() and "trial_user_attributes" not in s for s in statements)

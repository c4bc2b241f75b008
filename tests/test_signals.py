"""search.engine.signals: Ctrl-C interrupts the training at once, but never a store call."""

from __future__ import annotations

import os
import signal
import threading
import time

import optuna
import pytest

from search import compat, runner, storage
from search.engine.signals import Signals


@pytest.fixture
def trial(tmp_path):
    store = storage.resilient(f"sqlite:///{tmp_path / 's.db'}")
    yield optuna.create_study(storage=store).ask()
    compat.rdb_of(store).engine.dispose()


@pytest.fixture
def sig(trial):
    sig = Signals(compat.storage_of(trial.study)).install()
    yield sig
    sig.restore()


def ctrl_c() -> None:
    os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_during_a_store_write_lands_right_after_it(trial, sig, monkeypatch):
    store = compat.storage_of(trial.study)
    backend, written = compat.backend_of(store), []
    real = backend.set_trial_user_attr

    def write(trial_id, key, value):  # Ctrl-C arrives in the middle of the write
        ctrl_c()
        real(trial_id, key, value)
        written.append(key)

    monkeypatch.setattr(backend, "set_trial_user_attr", write)
    with pytest.raises(KeyboardInterrupt), sig.interruptible():
        runner.Recorder(trial)(0, 1.0, 0.5, 0.1)  # the report: three curves, one at a time
    assert written == ["lr_curve"]  # that write finished; the next one never started
    assert store.get_trial(compat.trial_id(trial)).user_attrs == {"lr_curve": [0.1]}


def test_ctrl_c_during_training_interrupts_at_once(sig):
    began = time.monotonic()
    with pytest.raises(KeyboardInterrupt), sig.interruptible():
        ctrl_c()
        time.sleep(5)
    assert time.monotonic() - began < 4


def test_a_store_call_in_another_thread_does_not_shield_the_training(trial, sig, monkeypatch):
    """The heartbeat thread writes while the training runs; Ctrl-C still interrupts it."""
    store = compat.storage_of(trial.study)
    entered, release = threading.Event(), threading.Event()

    def slow_beat(trial_id):
        entered.set()
        release.wait(10)

    monkeypatch.setattr(compat.backend_of(store), "record_heartbeat", slow_beat)
    beat = threading.Thread(target=store.record_heartbeat, args=(compat.trial_id(trial),))
    began = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt), sig.interruptible():
            beat.start()
            assert entered.wait(10)
            ctrl_c()
            time.sleep(5)
    finally:
        release.set()
        beat.join()
    assert time.monotonic() - began < 4

"""search.pace: what a pruner lets each trial expect, the epochs left, the measured pace, and a
plan's time. The ETA of a whole run against its real total is in tests/test_progress.py."""

from __future__ import annotations

from datetime import datetime, timedelta

import optuna
import pytest
from optuna.trial import TrialState

from search import pace

HYPERBAND = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=8, reduction_factor=3)


def test_the_prior_is_the_budget_without_a_pruner():
    assert pace.pruner_prior(optuna.pruners.NopPruner(), 8, 3) == [8.0, 8.0, 8.0]
    assert pace.pruner_prior(None, 4, 2) == [4.0, 4.0]


def test_the_prior_from_hyperband_the_shipped_lr_fashion_pruner():
    prior = pace.pruner_prior(HYPERBAND, 8, 30, "lr-fashion", defaults=2)
    assert prior == pace.pruner_prior(HYPERBAND, 8, 30, "lr-fashion", defaults=2)  # no luck
    assert prior[:2] == [8.0, 8.0]  # the enqueued defaults are never pruned
    assert all(1.0 <= e <= 8.0 for e in prior)
    # successive halving keeps about a third at each rung (epochs 1 and 3) once it has
    # trials to compare; the first ones it promotes
    assert 2.5 < sum(prior[10:]) / 20 < 4.5 < sum(prior[:10]) / 10
    longer = pace.pruner_prior(HYPERBAND, 8, 250, "lr-fashion", defaults=2)
    assert len(longer) == 250 and longer[:30] == prior


def test_epochs_left_scales_the_prior_by_what_finished_trials_trained():
    prior = [8.0, 8.0, 4.0, 4.0, 2.0, 2.0]
    # as expected so far: the running trial (1 epoch done) and three to start, unscaled
    assert pace.epochs_left(prior, [8, 8], [1], target=6) == (3.0 + 4 + 2 + 2, 3)
    # trained half what was expected: the rest is expected shorter, shrunk toward the prior
    left, to_start = pace.epochs_left(prior, [4, 4], [], target=6, weight=1)
    scale = (1 * 28 / 6 + 8) / (1 * 28 / 6 + 16)
    assert to_start == 4 and left == pytest.approx(scale * 12)
    assert pace.epochs_left(prior, [8] * 6, [], target=6) == (0.0, 0)


def test_eta_seconds_shares_the_work_among_trials_side_by_side():
    p = pace.Pace(seconds_per_epoch=10.0, seconds_per_trial=5.0)
    assert pace.eta_seconds(12.0, 2, p) == 130.0
    assert pace.eta_seconds(12.0, 2, p, parallel=2) == 65.0
    assert pace.eta_seconds(12.0, 2, None) is None


def _finished(number: int, epochs: int, seconds: float):
    start = datetime(2026, 12, 5, 12, 0)
    t = optuna.trial.create_trial(
        state=TrialState.COMPLETE if epochs == 8 else TrialState.PRUNED,
        value=0.9 if epochs == 8 else None,
        user_attrs={"val_acc_curve": [0.5] * epochs},
        intermediate_values={e: 0.5 for e in range(1, epochs + 1)})
    t.number, t.datetime_start = number, start
    t.datetime_complete = start + timedelta(seconds=seconds)
    return t


def test_measure_tells_the_start_of_a_trial_from_its_epochs():
    trials = [_finished(0, 8, 170), _finished(1, 1, 30), _finished(2, 3, 70), _finished(3, 1, 30)]
    m = pace.measure(trials)
    assert m.seconds_per_epoch == pytest.approx(20.0) and m.seconds_per_trial == pytest.approx(10)
    assert pace.measure([_finished(0, 8, 160)]) == pace.Pace(20.0)  # one length: the ratio
    assert pace.measure([]) is None


def test_a_plans_time_for_validate():
    p = pace.Pace(seconds_per_epoch=20.0, seconds_per_trial=10.0)
    # 10 runs of 8 epochs at 20 s an epoch and 10 s to start, 3 workers: 4 rounds
    ten = pace.Work((pace.Stage("run", 10, 8.0),))
    assert pace.work_seconds(ten, p, workers=3) == 4 * 170.0
    assert pace.work_seconds(ten, p) == 10 * 170.0 == pace.eta_seconds(80.0, 10, p)
    # stages one after the other, each in its own rounds: 5 sweep points, then 6 longer runs
    two = pace.Work((pace.Stage("sweep", 5, 4.0), pace.Stage("test", 6, 4.5)))
    assert pace.work_seconds(two, p, workers=2) == 3 * 90.0 + 3 * 100.0
    assert pace.work_seconds(pace.Work(), p) == 0.0


def test_work_left_counts_the_runs_to_start_and_what_running_trials_still_train():
    w = pace.Work((pace.Stage("grid run", 3, 4.0), pace.Stage("shape", 2, 2.5)),
                  {7: 8.0, 8: 4.0})
    assert w.runs == 5 and w.epochs == 3 * 4 + 2 * 2.5
    # trial 7 has trained 3 of its 8, trial 8 all of its 4 (and one more: never below 0)
    assert w.epochs_left({7: 3, 8: 5}) == w.epochs + 5
    assert w.epochs_left({}) == w.epochs + 12  # not seen yet: all of it


def test_the_prior_scale_is_what_finished_trials_trained_over_what_was_expected():
    prior = [8.0, 8.0, 4.0, 4.0]
    assert pace.prior_scale(prior, []) == 1.0
    assert pace.prior_scale(prior, [4, 4], weight=1) == pytest.approx((6 + 8) / (6 + 16))

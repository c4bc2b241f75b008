"""A contest's ETA knows its plan (search.contest.work -> search.pace.Work): the reference
grids horizon by horizon, the shapes the pruner may stop, the race's expected seeds.

Replayed on a recorded contest (tests/data/contest-run.json.gz): `python -m search run` of the
study below (the fake objective of tests/contest_objectives.py, 0.25 s an epoch by `sleep`;
horizons 2, 4 and 8 epochs as lr-fashion's; 80 trials, the race decided at 78), each trial's
tags, what training wrote that the contest reads, and its start and end as the store recorded
them (datetime_start, datetime_complete). The test writes them into an in-memory study
through search.record (Enqueued, Writer) and, at each finished trial, asks the rule what the
display would have asked then."""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timedelta

import optuna
import pytest
from conftest import ROOT
from optuna.trial import TrialState

from search import pace, record, runner
from search.config import load_study
from search.contest import race as racing
from search.contest import work

pytest.importorskip("schedulefree")  # the recorded run raced schedule-free SGD too

STUDY = """
name = "rec"
trials = 80
seed = 0
[objective]
function = "tests.contest_objectives:train"
epochs = 8
sleep = 0.25
noise = 0.003
lr_beta = 0.5
[space]
families = "all"
lr = { low = 0.001, high = 3.0, log = true }
default_lr = 0.1
[sampler]
name = "tpe"
n_startup_trials = 8
[pruner]
name = "hyperband"
min_resource = 1
reduction_factor = 3
[contest]
horizons = [2, 4, 8]
shape_trials = 12
finalists = 3
max_seeds = 4
noise_sd = 0.004
"""
T0 = datetime(2026, 12, 7, 20, 20)


@pytest.fixture
def cfg(tmp_path):
    (tmp_path / "rec.toml").write_text(STUDY)
    return load_study(str(tmp_path / "rec.toml"))


def _rows() -> list[dict]:
    with gzip.open(ROOT / "tests" / "data" / "contest-run.json.gz", "rt") as f:
        return json.load(f)["rows"]


class _Attrs(dict):
    """A trial's user attributes as search.record writes them (Enqueued.attrs(), Writer)."""

    def set_user_attr(self, key, value):
        self[key] = value


def _trial(row: dict) -> optuna.trial.FrozenTrial:
    """A recorded trial: its tags (Enqueued), what training wrote (Writer), its times."""
    attrs = _Attrs(record.Enqueued(**row["run"]).attrs() if row["run"] else {})
    w = record.Writer(attrs)
    w.built(row["built"], {}, "epoch", 4, row["length"], None)
    w.seed(row["seed"])
    w.epoch([row["built"]["lr"]] * row["epochs"], {"val_acc": [row["value"]] * row["epochs"]},
            None)
    if row["end_reason"]:
        w.end(row["end_reason"])
    t = optuna.trial.create_trial(state=TrialState[row["state"]], value=row["value"],
                                  user_attrs=dict(attrs))
    t.datetime_start = T0 + timedelta(seconds=row["start"])
    t.datetime_complete = T0 + timedelta(seconds=row["end"])
    return t


def _replay(cfg, rule):
    """(share of the run elapsed, implied end / real end) at each finished trial: the ETA that
    `rule(trials, study)` gives from the trials finished by then."""
    rows = _rows()
    study = runner.create_or_load(cfg, optuna.storages.InMemoryStorage())
    end = rows[-1]["end"]
    out = []
    for row in rows:
        study.add_trial(_trial(row))
        eta = rule(study.get_trials(deepcopy=False), study)
        out.append((row["end"] / end, (row["end"] + eta) / end))
    return out


def test_the_contest_eta_of_a_recorded_run_is_within_a_fifth_of_its_real_end(cfg):
    """From a fifth of the run on, the end the ETA implies is within 20% of the real end (at
    the store's pace: the fallback before this run has timed an epoch); today's rule (the
    pruner's expectation for 80 trials of 8 epochs) was 38% short at a fifth of the run."""
    rows = _rows()
    assert [r["number"] for r in rows] == list(range(len(rows)))  # one worker, no failures
    works = []

    def planned(trials, study):
        if not works:
            works.append(work.tracker(cfg, cfg.trials, study))
        w = works[0](trials)
        return pace.eta_seconds(w.epochs_left({}), w.runs, pace.measure(trials))

    prior = pace.pruner_prior(runner.make_pruner(cfg), cfg.epochs, cfg.trials, "rec")

    def today(trials, study):
        left, to_start = pace.epochs_left(prior, [record.epochs_trained(t) for t in trials], [],
                                          cfg.trials)
        return pace.eta_seconds(left, to_start, pace.measure(trials))

    new = [ratio for at, ratio in _replay(cfg, planned) if at >= 0.2]
    old = [ratio for at, ratio in _replay(cfg, today) if at >= 0.2]
    worst = max(new, key=lambda r: abs(r - 1))
    assert all(0.8 <= r <= 1.2 for r in new), worst
    assert abs(worst - 1) < max(abs(r - 1) for r in old) and min(old) < 0.8
    assert new[-1] == pytest.approx(1.0)  # nothing left at the end


def test_the_plan_at_the_start_counts_each_stage_as_the_run_trained_it(cfg):
    """Before any trial: every reference's grid at each horizon (its first points), the shapes,
    and the race's seeds bounded by the trials left; the recorded run trained the same grids
    (plus one point past an edge at each horizon, counted once it was due) and shapes."""
    rows = _rows()
    study = runner.create_or_load(cfg, optuna.storages.InMemoryStorage())
    w = work.tracker(cfg, cfg.trials, study)([])
    c = cfg.contest
    refs = 5  # cosine, constant, one-cycle, linear to zero, schedule-free SGD
    grids = [len(c.SCALE_STEPS) + (refs - 1) * len(c.SHAPE_STEPS), refs * len(c.SHAPE_STEPS),
             refs * len(c.SHAPE_STEPS)]
    assert [(s.runs, s.epochs) for s in w.stages[:3]] == [(grids[0], 2.0), (grids[1], 4.0),
                                                          (grids[2], 8.0)]
    trained = [sum(1 for r in rows if r["run"] and r["run"]["stage"] == "reference"
                   and r["length"] == h) for h in (2, 4, 8)]
    assert [t - g for t, g in zip(trained, grids, strict=True)] == [1, 1, 1]  # the extensions
    shapes = w.stages[3]
    assert shapes.name == "shape" and shapes.runs == c.shape_trials
    assert 1.0 <= shapes.epochs < cfg.epochs  # the pruner stops some
    # the race: every contender (5 references, 3 finalists) to 4 seeds at most, cut to the
    # trials that remain: 80 - 47 - 12
    assert w.stages[4].runs == min(8 * (c.max_seeds - 1), cfg.trials - sum(grids) - 12)
    assert w.running == {}


def test_running_trials_and_the_target_bound(cfg):
    """A running grid run is expected to train its horizon; the trials still to start never
    exceed what `target` allows, the last stages cut first."""
    rows = _rows()
    study = runner.create_or_load(cfg, optuna.storages.InMemoryStorage())
    for row in rows[:20]:
        study.add_trial(_trial(row))
    record.enqueue(study, record.Enqueued(**rows[20]["run"]))
    running = study.ask()  # claimed, as the engine claims it: RUNNING with its tags
    prior = [4.0] * cfg.contest.shape_trials
    w = work.remaining(cfg, study.get_trials(deepcopy=False), cfg.trials, prior)
    assert w.running == {running.number: float(rows[20]["length"])}
    assert w.epochs_left({running.number: 1}) == w.epochs + rows[20]["length"] - 1
    tight = work.remaining(cfg, study.get_trials(deepcopy=False), 30, prior)
    assert tight.runs == 30 - 20 - 1
    assert [s.runs for s in tight.stages][-2:] == [0, 0]  # no shape, no race within 30


def test_the_race_projection():
    """Each contender scoring its mean on every seed to come: one far behind is out after its
    first shared seed; rivals within noise run every seed; a decided race asks nothing."""
    seeds = [0, 1, 2, 3]
    far = [racing.Entry("a", {0: 0.90}), racing.Entry("b", {0: 0.80})]
    assert work.race_runs(far, 4, 0.003, seeds) == 0  # b is out already: nothing is due
    tied = [racing.Entry("a", {0: 0.900}), racing.Entry("b", {0: 0.899})]
    assert work.race_runs(tied, 4, 0.003, seeds) == 6  # both to 4 seeds
    assert work.race_runs(tied, 4, 0.003, seeds, running=[("a", 1)]) == 5
    done = [racing.Entry("a", dict.fromkeys(seeds, 0.9)),
            racing.Entry("b", dict.fromkeys(seeds, 0.899))]
    assert work.race_runs(done, 4, 0.003, seeds) == 0

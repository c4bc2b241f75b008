"""`validate`: the companion study, resuming, other lengths, `best` on validated results, and
the validation figure. A fast fake objective where training isn't the point (its accuracy is a
known function of schedule and seed); one tiny real training on the CIFAR fixture."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import math
import os
import re
import signal
import sqlite3
import statistics
import time

import optuna
import pytest
from optuna.trial import TrialState

from search import cli, compat, schedules
from search.config import load_study
from search.validation import plan, validate
from search.validation.validate import SEED_BASE

N_BASE = 4  # constant, cosine, one-cycle, linear to zero (the fake has no schedule-free)
N_SWEEP = 5 * N_BASE

CALLS: list[tuple] = []  # (family, seed, epochs, holdout, params) per fake training
STOP_AFTER: list[int] = []  # the fake raises KeyboardInterrupt once CALLS reaches this length
TERM_AFTER: list[int] = []  # the fake sends itself SIGTERM in its first epoch at this length

FAKE = """
trials = 8
seed = 0
[objective]
function = "test_validate:fake_train"
epochs = 4
[space]
families = ["Constant", "StepLR", "OneCycleLR", "CosineAnnealingLR"]
lr = { low = 0.01, high = 1.0, log = true }
enqueue_defaults = false
[sampler]
name = "random"
[pruner]
name = "none"
"""


def _noise(*parts) -> float:
    return int.from_bytes(hashlib.sha1(repr(parts).encode()).digest()[:4], "big") / 2**32


def fake_train(cfg, schedule, report) -> float:
    """StepLR is best, LR near 0.1 is best; each seed shifts every schedule a little, and each
    (schedule, seed) a little more, so the paired comparison has a spread to measure."""
    if STOP_AFTER and len(CALLS) >= STOP_AFTER[0]:
        raise KeyboardInterrupt
    params = dict(schedule.params)
    CALLS.append((schedule.family, cfg.seed, cfg.epochs, cfg.holdout, params))
    built = schedules.resolve(schedule, cfg.epochs, 10)
    if schedule.listener is not None:
        schedule.listener(built)
    acc = 0.6 + 0.2 * (schedule.family == "StepLR") - 0.05 * abs(math.log10(schedule.lr / 0.1))
    acc += 0.02 * _noise(cfg.seed) + 0.01 * _noise(schedule, cfg.seed, cfg.holdout)
    for epoch in range(cfg.epochs):
        report(epoch, 1 - acc, acc, schedule.lr)
        if TERM_AFTER and len(CALLS) == TERM_AFTER[0] + 1 and epoch == 0:
            os.kill(os.getpid(), signal.SIGTERM)  # as `docker compose stop` mid-trial
    return acc


fake_train.holdout = True  # its scores are the split's: cfg.holdout moves every one of them


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A finished 8-trial fake study, plus a StepLR and the standard OneCycleLR enqueued."""
    root = tmp_path_factory.mktemp("searched")
    (root / "fake.toml").write_text(FAKE)
    cfg = load_study(str(root / "fake.toml"))
    from search import runner

    study = runner.create_or_load(cfg, f"sqlite:///{root / 'search.db'}")
    study.enqueue_trial({"scheduler": "StepLR", "StepLR.step_size": 2, "StepLR.gamma": 0.3,
                         "lr": 0.1})
    study.enqueue_trial({"scheduler": "OneCycleLR", "lr": 0.1, "OneCycleLR.pct_start": 0.3,
                         "OneCycleLR.div_factor": 25.0, "OneCycleLR.final_div_factor": 1e4})
    assert cli.main(["run", "--study", str(root / "fake.toml"), "--storage",
                     f"sqlite:///{root / 'search.db'}"]) == 0
    return root


@pytest.fixture
def here(searched, tmp_path):
    """This test's own copy of the searched store (tests run in tmp_path)."""
    (tmp_path / "fake.toml").write_text(FAKE)
    with sqlite3.connect(searched / "search.db") as src, \
            sqlite3.connect(tmp_path / "search.db") as dst:
        src.backup(dst)
    CALLS.clear()
    STOP_AFTER.clear()
    TERM_AFTER.clear()
    return tmp_path


def _load(name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage="sqlite:///search.db")


def _validate(*args: str) -> int:
    return cli.main(["validate", "--study", "fake.toml", *args])


def _json_best(capsys, *args: str) -> dict:
    capsys.readouterr()
    assert cli.main(["best", "--study", "fake.toml", "--format", "json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_companion_holds_k_plus_baselines_times_n_and_best_reads_it(here, capsys):
    assert _validate("--top", "2", "--seeds", "3") == 0
    comp = _load("fake.validate")
    done = comp.get_trials(states=(TrialState.COMPLETE,))
    trials = [t for t in done if t.user_attrs["holdout"] == "test"]
    sweeps = [t for t in done if t.user_attrs["holdout"] == "val"]
    # the study has < 5 trials of each family: every baseline's LR is swept (5 LRs each, the
    # best inside, so no extension) on the validation split, the search's seed and budget
    assert len(sweeps) == N_SWEEP and {t.user_attrs["seed"] for t in sweeps} == {0}
    assert len(comp.trials) == len(done) == N_SWEEP + (2 + N_BASE) * 3  # no schedule-free here
    assert len(CALLS) == len(comp.trials) and {c[3] for c in CALLS} == {"test", "val"}
    seeds = {SEED_BASE, SEED_BASE + 1, SEED_BASE + 2}
    assert {c[1] for c in CALLS if c[3] == "test"} == seeds and {c[2] for c in CALLS} == {4}
    by_key: dict[str, dict[int, float]] = {}
    for t in trials:
        assert t.user_attrs["holdout"] == "test" and t.user_attrs["epochs"] == 4
        assert t.user_attrs["fixed_schedule"]["family"] in schedules.SCHEDULES
        assert t.user_attrs["schedule"] == t.user_attrs["fixed_schedule"]
        by_key.setdefault(t.user_attrs["validate_key"], {})[t.user_attrs["seed"]] = t.value
    roles = {t.user_attrs["validate_key"]: t.user_attrs["roles"] for t in trials}
    assert sorted(r for rs in roles.values() for r in rs).count("baseline") == N_BASE
    # each baseline trains at the LR its sweep scored best
    for key, rs in roles.items():
        if "baseline" not in rs:
            continue
        meta = comp.user_attrs[f"schedule.{key}"]
        label = meta["label"]
        swept = {t.user_attrs["schedule"]["lr"]: t.value for t in sweeps
                 if t.user_attrs["label"] == label}
        assert len(swept) == 5 and meta["lr"] == max(swept, key=swept.get)
        assert meta["lr_source"].startswith("sweep of 5 LRs on the validation split")
    assert all(set(v) == seeds for v in by_key.values())

    # `best` now ranks by mean test accuracy and compares with the best baseline, seed by seed
    out = _json_best(capsys)
    means = {k: statistics.mean(v.values()) for k, v in by_key.items()}
    cands = [k for k in by_key if "candidate" in roles[k]]
    bases = [k for k in by_key if "baseline" in roles[k]]
    win, base = max(cands, key=means.get), max(bases, key=means.get)
    diffs = [by_key[win][s] - by_key[base][s] for s in sorted(seeds)]
    half = 4.30265273 * statistics.stdev(diffs) / math.sqrt(3)  # t table, df = 2
    assert out["validated"] is True and out["validation_study"] == "fake.validate"
    assert out["mean"] == pytest.approx(means[win])
    assert out["std"] == pytest.approx(statistics.stdev(by_key[win].values()))
    assert out["margin"] == pytest.approx(statistics.mean(diffs))
    assert out["margin_std"] == pytest.approx(statistics.stdev(diffs))
    assert (out["margin_low"], out["margin_high"]) == pytest.approx(
        (statistics.mean(diffs) - half, statistics.mean(diffs) + half))
    src = next(t for t in trials if t.user_attrs["validate_key"] == win)
    assert out["trial_number"] == src.user_attrs["source_trial"]
    assert out["baseline_mean"] == pytest.approx(means[base]) and out["n_seeds"] == 3
    assert "import torch" in out["code"]
    capsys.readouterr()
    assert cli.main(["best", "--study", "fake.toml"]) == 0
    text = capsys.readouterr().out
    assert "Study 'fake': best trial " in text and "validated on the test split" in text
    assert f"{means[win]:.4f} ± " in text and "verdict  :" in text and "margin   :" in text
    assert "schedule-free SGD baseline not run" in text
    # the fake trains 10 steps an epoch when validating and when searching: nothing to add
    assert "validated as" not in text


PLAN = re.compile(r"^validate plan: .*LR sweeps of (\d+) baselines \((\d+) runs, and up to "
                  r"(\d+) more where a best LR sits on a grid's edge\): (\d+)-(\d+) runs, ",
                  re.MULTILINE)


def _plan(err: str) -> tuple[int, ...]:
    """(baselines swept, their first points, the most they may add, runs: least, most)."""
    found = PLAN.search(err)
    assert found, err
    return tuple(int(g) for g in found.groups())


def test_the_plan_counts_exactly_the_runs_validate_trains(here, capsys):
    """Issue 32: the plan said 2 schedules x 2 seeds + the sweeps, and left out the baselines'
    own test runs. Here every sweep's best LR is inside its grid: the plan's count is exact."""
    assert _validate("--top", "2", "--seeds", "3") == 0
    err = capsys.readouterr().err
    swept, first, more, least, most = _plan(err)
    assert "2 schedules + 4 baselines at the LR their sweeps find x 3 seeds at 4 epochs" in err
    assert (swept, first) == (N_BASE, N_SWEEP)
    assert least == len(CALLS) == N_SWEEP + (2 + N_BASE) * 3
    assert most == least + more and more > 0  # the study's LR range leaves room past each edge
    # a rerun: everything it counts is held, and the sweeps are done (nothing past an edge)
    CALLS.clear()
    assert _validate("--top", "2", "--seeds", "3") == 0
    assert f"(0-{more} to train: the companion study holds {least} of them)" in (
        capsys.readouterr().err) and CALLS == []


def test_a_sweep_extended_past_its_edge_is_inside_the_plans_range(here, capsys):
    """The default LR far below the best (0.1): every sweep's best is its grid's top point, so
    each adds a point past it; the plan said which first points it trains (the study's LR range
    clips the lowest two onto one), and how many more it might."""
    (here / "fake.toml").write_text(FAKE.replace("enqueue_defaults = false",
                                                 "enqueue_defaults = false\ndefault_lr = 0.012"))
    assert _validate("--top", "1", "--seeds", "1") == 0
    swept, first, more, least, most = _plan(capsys.readouterr().err)
    sweeps = [c for c in CALLS if c[3] == "val"]
    assert first == 4 * N_BASE  # 0.0013 and 0.004 are both 0.01, the range's low end
    assert len(sweeps) > first and least < len(CALLS) <= most


def test_the_plans_time_is_the_pace_rule_on_the_searchs_pace(here, monkeypatch):
    """The estimate is search.pace's rule on the runs the plan counts: at 2 s an epoch and
    0.5 s to start a run, a test run's epoch 1 / (1 - val_fraction) as long (it trains on the
    validation carve too); with 2 workers, each stage in rounds of 2."""
    from search import pace
    from search.progress import duration

    monkeypatch.setattr(pace, "measure", lambda trials: pace.Pace(2.0, 0.5))
    cfg = load_study("fake.toml")
    p = validate.plan(cfg, _load("fake"), top=2)
    seeds = [SEED_BASE, SEED_BASE + 1]
    scale = 1 / (1 - cfg.train.val_fraction)
    sweep, test = 4 * 2.0 + 0.5, 4 * 2.0 * scale + 0.5
    for jobs in (1, 2):
        line = validate._plan_line(cfg, _load("fake"), p, seeds, jobs)
        w = plan.plan_work(cfg, p, seeds, scale)
        secs = [pace.work_seconds(x, pace.Pace(2.0, 0.5), jobs) for x in (w.least, w.most)]
        assert f"about {duration(secs[0])}-{duration(secs[1])} at the search's pace" in line
        if jobs == 1:  # 20 sweep points (and up to 4 more), 6 schedules x 2 seeds
            assert secs == pytest.approx([20 * sweep + 12 * test, 24 * sweep + 12 * test])
        else:  # each sweep's 5 points in 3 rounds, its point past an edge in 1
            assert secs == pytest.approx([4 * 3 * sweep + 6 * test,
                                          4 * 4 * sweep + 6 * test])


def test_rerunning_a_half_done_or_finished_validation_trains_only_what_is_missing(here, capsys):
    STOP_AFTER.append(7)  # Ctrl-C during the 8th training
    assert _validate("--top", "2", "--seeds", "3") == 130
    comp = _load("fake.validate")
    assert len(comp.get_trials(states=(TrialState.COMPLETE,))) == 7
    (stopped,) = comp.get_trials(states=(TrialState.FAIL,))
    assert stopped.user_attrs["end_reason"] == "interrupted"
    STOP_AFTER.clear()
    CALLS.clear()
    total = N_SWEEP + (2 + N_BASE) * 3
    assert _validate("--top", "2", "--seeds", "3") == 0
    assert len(CALLS) == total - 7  # the interrupted run again, and the ones never started
    CALLS.clear()
    capsys.readouterr()
    assert _validate("--top", "2", "--seeds", "3") == 0
    err = capsys.readouterr().err
    assert CALLS == [] and f"{(2 + N_BASE) * 3} runs done, 0 to train" in err
    assert "tuning the LR of linear to zero (5 LRs): 5 runs done, 0 to train" in err
    assert _validate("--top", "2", "--seeds", "4") == 0
    assert len(CALLS) == 2 + N_BASE and {c[1] for c in CALLS} == {SEED_BASE + 3}
    done = _load("fake.validate").get_trials(states=(TrialState.COMPLETE,))
    runs = [(t.user_attrs["validate_key"], t.user_attrs["seed"], t.user_attrs["holdout"])
            for t in done]
    assert len(runs) == len(set(runs)) == total + 2 + N_BASE  # nothing trained twice


def test_sigterm_mid_run_ends_it_as_interrupted_exits_0_and_a_rerun_trains_the_rest(here):
    TERM_AFTER.append(7)  # SIGTERM during the 8th training, after its first epoch
    assert _validate("--top", "2", "--seeds", "3") == 0
    comp = _load("fake.validate")
    assert not comp.get_trials(states=(TrialState.RUNNING,))
    assert len(comp.get_trials(states=(TrialState.COMPLETE,))) == 7
    (stopped,) = comp.get_trials(states=(TrialState.FAIL,))
    assert stopped.user_attrs["end_reason"] == "interrupted"
    assert len(stopped.intermediate_values) == 1  # stopped in its first epoch, not after
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler was put back
    TERM_AFTER.clear()
    CALLS.clear()
    assert _validate("--top", "2", "--seeds", "3") == 0
    assert len(CALLS) == N_SWEEP + (2 + N_BASE) * 3 - 7  # exactly what is missing


def test_jobs_share_the_runs_and_train_each_once(here, monkeypatch):
    from conftest import ROOT

    monkeypatch.setenv("PYTHONPATH", f"{ROOT}:{ROOT / 'tests'}")  # the workers import the fake
    assert _validate("--top", "2", "--seeds", "2", "--jobs", "2") == 0
    comp = _load("fake.validate")
    assert {t.state for t in comp.trials} == {TrialState.COMPLETE}
    runs = [(t.user_attrs["validate_key"], t.user_attrs["seed"], t.user_attrs["holdout"])
            for t in comp.trials]
    assert len(runs) == len(set(runs)) == N_SWEEP + (2 + N_BASE) * 2  # nothing trained twice
    assert len({t.system_attrs["worker"] for t in comp.trials}) == 2  # both workers trained
    assert CALLS == []  # trained in the worker processes, not here


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # the test's own ask(), below
def test_a_run_left_running_by_a_killed_process_is_trained_again(here):
    from search import storage

    (here / "fake.toml").write_text(FAKE + "[workers]\nheartbeat_interval = 1\ngrace_period = 2\n")
    job = validate.plan(load_study("fake.toml"), _load("fake"), top=1).jobs[0]
    store = storage.open_storage("sqlite:///search.db", heartbeat_interval=1, grace_period=2)
    comp = validate.open_companion(store, "fake")
    killed = comp.ask()  # as a process killed mid-training leaves it: RUNNING, heartbeat stops
    for k, v in {"validate_key": job.key, "seed": SEED_BASE, "epochs": 4}.items():
        killed.set_user_attr(k, v)
    store.record_heartbeat(compat.trial_id(killed))
    # past the grace period: SQLite's CURRENT_TIMESTAMP, which optuna's heartbeats use, counts
    # whole seconds, so 2.5 s can read as 2 (not stale yet); a full second more always reads > 2
    time.sleep(3.5)
    assert _validate("--top", "1", "--seeds", "1") == 0
    assert len(CALLS) == 1 + N_BASE + N_SWEEP and job.schedule.family in [c[0] for c in CALLS]
    assert _load("fake.validate").trials[killed.number].state == TrialState.FAIL


def test_a_queued_run_of_another_plan_is_not_trained_and_does_not_stop_this_one(here):
    from search import storage

    comp = validate.open_companion(storage.open_storage("sqlite:///search.db"), "fake")
    comp.enqueue_trial({"scheduler": "StepLR"},  # e.g. left by a run with another --top
                       user_attrs={"validate_key": "elsewhere", "seed": 1, "epochs": 4})
    assert _validate("--top", "1", "--seeds", "1") == 0
    assert len(CALLS) == 1 + N_BASE + N_SWEEP
    trials = _load("fake.validate").trials
    assert [t.state for t in trials].count(TrialState.FAIL) == 1
    assert next(t for t in trials if t.state == TrialState.FAIL).user_attrs["validate_key"] == (
        "elsewhere")
    assert [t.state for t in trials].count(TrialState.COMPLETE) == len(CALLS)


def test_a_searched_schedule_equal_to_a_baseline_is_trained_once_with_both_roles(
    here, monkeypatch
):
    monkeypatch.setattr(plan, "MIN_STUDY_TRIALS", 1)  # every family lends its best LR
    cfg = load_study("fake.toml")
    p = validate.plan(cfg, _load("fake"), top=10)
    keys = [j.key for j in p.jobs]
    assert len(keys) == len(set(keys))
    both = {j.schedule.family: j for j in p.jobs if set(j.roles) == {"candidate", "baseline"}}
    assert "(= OneCycleLR (standard))" in both["OneCycleLR"].label
    # every searched trial is a candidate here, so the best Constant one is a baseline too
    assert set(both) == {"OneCycleLR", "Constant"}
    assert sum("baseline" in j.roles for j in p.jobs) == 3  # PolynomialLR: not in the study
    assert [b.slot for b in p.sweeps] == ["linear0"]
    assert all("trial" in j.lr_source for j in p.jobs if "baseline" in j.roles)
    assert sum("candidate" in j.roles for j in p.jobs) == len(_load("fake").trials) == 8
    # each candidate is the searched trial's own schedule, exactly as it recorded it
    for j in p.jobs:
        if j.source_trial is not None:
            t = _load("fake").trials[j.source_trial]
            assert j.schedule.to_dict() == t.user_attrs["schedule"]


def test_other_length_rescales_epoch_counts_and_best_shows_each_length(here, capsys):
    assert _validate("--top", "1", "--seeds", "1", "--epochs", "8") == 0
    comp = _load("fake.validate")
    assert {t.user_attrs["epochs"] for t in comp.trials} == {8}
    step = next(t for t in comp.trials if t.user_attrs["schedule"]["family"] == "StepLR")
    src = _load("fake").trials[step.user_attrs["source_trial"]]
    assert step.user_attrs["scheduler_kwargs"]["step_size"] == (
        2 * src.user_attrs["scheduler_kwargs"]["step_size"])
    cos = next(t for t in comp.trials if t.user_attrs["label"].startswith("CosineAnnealingLR"))
    # the reference steps per optimizer step: its whole run is 8 epochs of optimizer steps
    assert cos.user_attrs["interval"] == "iteration" and cos.user_attrs["epochs"] == 8
    assert cos.user_attrs["scheduler_kwargs"]["T_max"] == 8 * cos.user_attrs["steps_per_epoch"]
    assert _json_best(capsys)["validation_epochs"] == 8  # the only length validated so far
    assert _validate("--top", "1", "--seeds", "1") == 0
    out = _json_best(capsys)
    assert out["validation_epochs"] == 4 and out["other_epochs"] == [8]
    assert _json_best(capsys, "--epochs", "8")["validation_epochs"] == 8


def test_not_validated_best_says_how_and_json_keeps_its_fields(here, capsys):
    out = _json_best(capsys)
    assert out["validated"] is False and out["mean"] is None and out["margin"] is None
    assert cli.main(["best", "--study", "fake.toml"]) == 0
    assert "python -m search validate --study fake" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--top", "0"], "--top: must be >= 1 but got 0"),
    (["--seeds", "x"], "--seeds: must be an integer"),
])
def test_bad_flags_are_one_line_exit_2(here, capsys, args, message):
    with pytest.raises(SystemExit) as e:
        _validate(*args)
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_a_study_without_its_file_or_without_trials_is_a_user_error(here, capsys):
    optuna.create_study(study_name="loose", storage="sqlite:///search.db")
    assert cli.main(["validate", "--study", "loose"]) == 2
    assert "validate needs the study file of 'loose'" in capsys.readouterr().err
    (here / "empty.toml").write_text(FAKE.replace("trials = 8", "name = 'empty'"))
    optuna.create_study(study_name="empty", storage="sqlite:///search.db")
    assert cli.main(["validate", "--study", "empty.toml"]) == 2
    assert "has no complete trial to validate" in capsys.readouterr().err
    assert "empty.validate" not in optuna.get_all_study_names("sqlite:///search.db")


def test_validation_figure_info_and_plot(here):
    from dashboards import validation as fig

    info = fig._info(_load("fake"))
    assert info.panels == [] and "python -m search validate --study fake" in info.reason
    assert "not validated yet" in fig._plot(info).layout.annotations[0].text
    assert _validate("--top", "2", "--seeds", "2") == 0
    info = fig._info(_load("fake"))
    (panel,) = info.panels
    assert info.study == "fake.validate" and panel.epochs == 4
    assert sorted(r.role for r in panel.rows) == ["baseline"] * N_BASE + ["candidate",
                                                                         "recommended"]
    assert all(len(r.scores) == 2 and r.seeds == [SEED_BASE, SEED_BASE + 1] for r in panel.rows)
    means = [r.mean for r in panel.rows]
    assert means == sorted(means, reverse=True)
    plotted = fig._plot(info)
    baselines = [t for t in plotted.data if t.marker.symbol == "diamond"]
    assert len(baselines) == 1 and len(baselines[0].y) == N_BASE
    assert list(baselines[0].error_x.array) == pytest.approx(
        [r.std for r in panel.rows if r.role == "baseline"], rel=1e-6)
    assert panel.verdict in plotted.layout.annotations[0].text


def test_real_training_uses_all_training_data_and_scores_on_the_test_split(
    tmp_path, cifar_dir, capsys
):
    """Smoke study on the CIFAR fixture (600 train = 450 + 150 val, 200 test, batch 64)."""
    from objectives.classify import TrainConfig

    data = ["--data-dir", str(cifar_dir)]
    assert cli.main(["run", "--study", "smoke", "--trials", "2", *data]) == 0
    assert cli.main(["validate", "--study", "smoke", "--top", "1", "--seeds", "1", *data]) == 0
    free = (importlib.util.find_spec("schedulefree") is not None
            and "optimizer" in {f.name for f in dataclasses.fields(TrainConfig)})
    comp = optuna.load_study(study_name="smoke.validate", storage="sqlite:///search.db")
    done = [t for t in comp.get_trials(states=(TrialState.COMPLETE,))
            if t.user_attrs["holdout"] == "test"]
    assert len(done) == 1 + N_BASE + free
    searched = optuna.load_study(study_name="smoke", storage="sqlite:///search.db").trials
    assert {t.user_attrs["steps_per_epoch"] for t in searched} == {450 // 64}
    assert {t.user_attrs["steps_per_epoch"] for t in done} == {600 // 64}  # train + val carve
    # `best` says at which budget it was validated, and how to print exactly that
    capsys.readouterr()
    assert cli.main(["best", "--study", "smoke"]) == 0
    assert "validated as     : 2 epochs x 9 steps" in capsys.readouterr().out
    # what validate trained is exactly what `best` prints for that budget
    study = optuna.load_study(study_name="smoke", storage="sqlite:///search.db")
    from search import answer

    for t in done:
        if t.user_attrs.get("source_trial") is not None:
            rec = answer.from_trial("smoke", study.trials[t.user_attrs["source_trial"]], 2,
                                    600 // 64)
            assert (rec.kwargs, rec.warmup, rec.interval) == (
                t.user_attrs["scheduler_kwargs"], t.user_attrs.get("warmup"),
                t.user_attrs["interval"])
    for t in done:  # scored on the 200 test images (not the 150 val): multiples of 1/200
        curve = t.user_attrs["val_acc_curve"]
        assert len(curve) == 2 and curve[-1] == t.value and t.user_attrs["holdout"] == "test"
        assert all(abs(v * 200 - round(v * 200)) < 1e-6 for v in curve)


def test_baselines_are_tuned_on_the_searchs_training_seed_not_the_sampler_seed(here):
    """Issue 20 B: the sweep trains with the objective's seed (what the search's trials train
    with), not the sampler's `seed`."""
    (here / "fake.toml").write_text(FAKE.replace("seed = 0\n", "seed = 7\n", 1)
                                    .replace("epochs = 4\n", "epochs = 4\nseed = 3\n", 1))
    assert _validate("--top", "1", "--seeds", "1") == 0
    sweeps = [c for c in CALLS if c[3] == "val"]
    assert sweeps and {c[1] for c in sweeps} == {3}


def test_a_queued_run_of_an_older_plan_is_failed_not_trained(here):
    """Issue 20 L: `ask` takes the oldest queued trial; a leftover of an older plan is failed
    (end_reason not_due) before it, and counts toward no failure streak."""
    comp = validate.open_companion(compat.storage_of(_load("fake")), "fake")
    for i in range(6):  # more than the failure streak allows
        comp.enqueue_trial({}, user_attrs={"validate_key": f"old{i}", "seed": 1, "epochs": 4,
                                           "holdout": "test"})
    assert _validate("--top", "1", "--seeds", "1") == 0
    comp = _load("fake.validate")
    old = [t for t in comp.trials if t.user_attrs.get("validate_key", "").startswith("old")]
    assert len(old) == 6 and {t.state for t in old} == {TrialState.FAIL}
    assert {t.user_attrs.get("end_reason") for t in old} == {"not_due"}
    assert not [c for c in CALLS if c[1] == 1]  # none of them was trained

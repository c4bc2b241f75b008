"""The progress display: its ETA on a fake clock (arithmetic, and against the real total of a
recorded-like run), the piped line per trial, worker processes' trials read from the store,
and the live panel in a real terminal (tmux) during a tiny run: ETA, epoch n/N, a clock that
moves between epochs."""

from __future__ import annotations

import gzip
import io
import json
import random
import re
import shutil
import subprocess
import time
import uuid

import optuna
import pytest
from conftest import ROOT
from optuna.trial import TrialState
from workers_support import ENV, write_study

from search import pace
from search.progress import Progress, duration


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _trial(number, state, value, epochs, family="StepLR", budget=4):
    accs = [0.5 + 0.01 * e for e in range(epochs)]
    attrs = {"val_acc_curve": accs, "epochs": budget}
    if state == TrialState.PRUNED:
        attrs["end_reason"] = "pruned"
    t = optuna.trial.create_trial(
        state=state, value=value, params={"scheduler": family},
        distributions={"scheduler": optuna.distributions.CategoricalDistribution(
            ["StepLR", "Constant"])}, user_attrs=attrs)
    t.number = number
    return t


def _study(*trials, pruner=None):
    study = optuna.create_study(direction="maximize",
                                pruner=pruner or optuna.pruners.NopPruner())
    study.set_user_attr("epochs", 4)
    study.add_trials(list(trials))
    return study


class FakeTrial:
    def __init__(self, number, family):
        self.number, self.params = number, {"scheduler": family}


def test_duration():
    assert [duration(s) for s in (0, 45.9, 62, 3725)] == ["0s", "45s", "1m02s", "1h02m"]


def test_eta_uses_the_pruning_rate_so_far_and_the_measured_epoch_time():
    """Store: one complete trial (4 epochs) and one pruned after 2 (no pruner now: 4 epochs
    expected each). Here: trial 2 runs 2 epochs, 5 s apart; a trial begun after the first epoch
    shows what starting one costs (the run's first also loaded the data)."""
    clock, out = Clock(), io.StringIO()
    p = Progress(live=False, stream=out, clock=clock)
    study = _study(_trial(0, TrialState.COMPLETE, 0.9, 4, "Constant"),
                   _trial(1, TrialState.PRUNED, None, 2))
    p.start(study, target=6)
    assert p.eta() is None  # nothing timed: the stored trials have no clock times
    p.trial_started(FakeTrial(2, "StepLR"))
    clock.now += 80  # loading data
    p.epoch(2, 1, 0.6)
    clock.now += 5
    p.epoch(2, 2, 0.7)
    assert p.measured_pace() == pace.Pace(5.0, 0.0)
    # 6 epochs trained of 8 expected: 3/4 of the prior for the rest, shrunk toward it by
    # PRIOR_WEIGHT trials of 4 epochs
    scale = (pace.PRIOR_WEIGHT * 4 + 6) / (pace.PRIOR_WEIGHT * 4 + 8)
    # trial 2's epochs left, then 3 trials still to start, at 5 s an epoch
    assert p.eta() == pytest.approx((4 * scale - 2 + 3 * 4 * scale) * 5.0)
    assert ("running trial 2 StepLR at 4 epochs: epoch 2/4 done  val acc 0.7000  1m25s"
            in "\n".join(p.lines()))
    assert "best 0.9000 Constant (trial 0)" in p.lines()[-1]
    assert "finished 2/6 (1 complete, 1 pruned)" in p.lines()[0]


def test_before_two_epochs_are_timed_the_eta_says_so():
    clock = Clock()
    p = Progress(live=False, stream=io.StringIO(), clock=clock)
    p.start(_study(), target=2)
    assert p.eta() is None and "ETA once 2 epochs are timed" in p.lines()[0]


def test_a_run_with_a_plan_counts_its_runs_by_stage():
    """A run made of stages (a contest gives search.contest.work): the ETA counts the runs its
    plan still has to start, each at its stage's length, and what each running trial is
    expected to train less what it has; the plan is read again as trials start and finish."""
    lengths = [2, 2, 8, 8]  # two short runs, then two long ones

    def work_of(trials):
        begun = [t for t in trials if t.state != TrialState.WAITING]
        todo = lengths[len(begun):]
        return pace.Work((pace.Stage("short run", todo.count(2), 2.0),
                          pace.Stage("long run", todo.count(8), 8.0)),
                         {t.number: float(lengths[t.number]) for t in trials
                          if t.state == TrialState.RUNNING})

    clock = Clock()
    p = Progress(live=False, stream=io.StringIO(), clock=clock)
    study = _study()
    p.start(study, target=4)
    p.plan(work_of)
    assert "(4 runs to start: 2 short runs (2 epochs), 2 long runs (8 epochs))" in p.lines()[0]
    trial = study.ask()
    p.trial_started(trial)
    clock.now += 10  # loading data
    p.epoch(trial.number, 1, 0.6)
    clock.now += 3
    p.epoch(trial.number, 2, 0.7)
    assert p.measured_pace() == pace.Pace(3.0, 0.0)
    # trial 0 has trained its 2 epochs; 1 short and 2 long runs to start, 3 s an epoch
    assert p.eta() == pytest.approx((2 + 2 * 8) * 3.0)
    study.tell(trial, 0.7)
    p.trial_finished(study, study.trials[0])
    assert p.eta() == pytest.approx((2 + 2 * 8) * 3.0)
    clock.now += 1  # storing trial 0, claiming the next
    trial = study.ask()
    p.trial_started(trial)  # begun after the first epoch: its start is timed, from the last
    clock.now += 3  # epoch before it (it trains alone)
    p.epoch(trial.number, 1, 0.6)
    assert p.measured_pace() == pace.Pace(3.0, 1.0)
    # trial 1: 1 epoch of its 2 left; 2 long runs to start, each 1 s to start
    assert p.eta() == pytest.approx((1 + 2 * 8) * 3.0 + 2 * 1.0)
    assert "(2 runs to start: 2 long runs (8 epochs))" in p.lines()[0]
    p.work = pace.Work((pace.Stage("grid run", 3, 2.0), pace.Stage("grid run", 1, 4.0),
                        pace.Stage("shape", 1, 3.75)))
    assert "(5 runs to start: 4 grid runs (2-4 epochs), 1 shape (~3.8 epochs))" in (
        p.lines()[0])
    study.tell(trial, 0.8)
    p.trial_finished(study, study.trials[1])
    p.plan(lambda trials: pace.Work())  # nothing left before the target (a race decided)
    assert "finished 2/4" in p.lines()[0] and p.lines()[0].endswith("done[/]")


# lr-fashion's pruner (search/studies/lr-fashion.toml: hyperband from epoch 1, factor 3)
HYPERBAND = {"min_resource": 1, "max_resource": 8, "reduction_factor": 3}


def _recorded_run() -> list[int]:
    """Epochs each of 30 trials trains in an lr-fashion search: the first 30 recorded
    Fashion-MNIST learning curves (tests/data/curves-slice.json.gz; 8 epochs each) reported to
    Optuna's HyperbandPruner as lr-fashion configures it, the first two as the enqueued defaults
    (never pruned)."""
    with gzip.open(ROOT / "tests" / "data" / "curves-slice.json.gz") as f:
        rows = json.load(f)["rows"][:30]
    study = optuna.create_study(direction="maximize", study_name="lr-fashion",
                                pruner=optuna.pruners.HyperbandPruner(**HYPERBAND))
    out = []
    for i, row in enumerate(rows):
        trial, reached = study.ask(), 8
        for epoch, acc in enumerate(row["val_acc"], 1):
            trial.report(acc, epoch)
            if i >= 2 and trial.should_prune():
                reached = epoch
                break
        study.tell(trial, row["val_acc"][-1] if reached == 8 else None,
                   state=TrialState.COMPLETE if reached == 8 else TrialState.PRUNED)
        out.append(reached)
    return out


def test_the_eta_of_a_recorded_like_run_is_within_a_fifth_of_its_real_total():
    """The recorded pruning at steady load (24 s an epoch +-10%, 3 s to start a trial, 40 s of
    data loading before the first): from a fifth of the run on, elapsed + ETA is within 20% of
    the real total at every epoch and trial the display sees."""
    epochs = _recorded_run()
    assert len(epochs) == 30 and set(epochs) == {1, 3, 8}  # pruned at the rungs, or not
    rng = random.Random(0)
    seconds = [[24 * rng.uniform(0.9, 1.1) for _ in range(e)] for e in epochs]
    total = 40 + 3 * 30 + sum(map(sum, seconds))
    clock = Clock()
    p = Progress(live=False, stream=io.StringIO(), clock=clock)
    study = optuna.create_study(direction="maximize", study_name="lr-fashion",
                                pruner=optuna.pruners.HyperbandPruner(**HYPERBAND))
    study.set_user_attr("epochs", 8)
    for _ in range(2):
        study.enqueue_trial({}, user_attrs={"default": True})
    p.start(study, target=30)
    implied = []

    def look() -> None:
        elapsed, eta = clock.now - p.started, p.eta()
        if eta is not None:
            implied.append((elapsed / total, (elapsed + eta) / total))

    clock.now += 40  # loading data
    for number, per_epoch in enumerate(seconds):
        clock.now += 3
        p.trial_started(FakeTrial(number, "StepLR"))
        for epoch, s in enumerate(per_epoch, 1):
            clock.now += s
            p.epoch(number, epoch, 0.8)
            look()
        state = TrialState.COMPLETE if len(per_epoch) == 8 else TrialState.PRUNED
        p.trial_finished(study, _trial(number, state, 0.8 if len(per_epoch) == 8 else None,
                                       len(per_epoch), budget=8))
        look()
    assert clock.now - p.started == pytest.approx(total)
    late = [ratio for at, ratio in implied if at >= 0.2]
    assert late and all(0.8 <= ratio <= 1.2 for ratio in late), max(late, key=lambda r: abs(r - 1))
    # the rule this replaces (the full budget until a trial finished, then the plain mean of
    # the finished ones) started at twice the real total: this one at most a third over
    assert implied[0][1] < 1.35


def test_piped_output_is_one_line_per_trial_with_the_eta():
    clock, out = Clock(), io.StringIO()
    p = Progress(live=False, stream=out, clock=clock)
    study = _study()
    p.start(study, target=3)
    p.trial_started(FakeTrial(0, "StepLR"))
    for e in range(4):
        clock.now += 2
        p.epoch(0, e + 1, 0.5 + e / 10)
    p.trial_finished(study, _trial(0, TrialState.COMPLETE, 0.8, 4))
    p.trial_started(FakeTrial(1, "Constant"))
    clock.now += 2
    p.epoch(1, 1, 0.4)
    p.trial_finished(study, _trial(1, TrialState.PRUNED, None, 1, "Constant"))
    lines = out.getvalue().splitlines()
    assert lines[0] == ("[1/3] trial 0 StepLR at 4 epochs: val_acc 0.8000 (complete); best "
                        "0.8000 StepLR (trial 0); ETA 16s")  # 2 trials x 4 epochs x 2 s
    # 5 epochs trained of 8 expected (shrunk toward the prior): 1 trial left, 2 s an epoch
    assert lines[1] == ("[2/3] trial 1 Constant at 4 epochs: val_acc 0.5000 (pruned after epoch "
                        "1/4); best 0.8000 StepLR (trial 0); ETA 7s")
    assert len(lines) == 2  # no start-up or epoch chatter when piped


def test_start_up_phase_is_shown_until_the_first_epoch():
    clock = Clock()
    p = Progress(live=False, stream=io.StringIO(), clock=clock)
    p.phase("loading data")
    clock.now += 81
    p.start(_study(), target=2)
    assert "loading data ... 1m21s" in "\n".join(p.lines())
    p.trial_started(FakeTrial(0, "StepLR"))
    text = "\n".join(p.lines())
    assert "running trial 0 StepLR at 4 epochs: starting" in text
    assert "loading data ..." not in text


def _fixed(number, state, stage, label, epochs, lr, seed=0):
    """A contest's fixed run as its record has it (search.contest.policy enqueues it)."""
    attrs = {"fixed_schedule": {"family": "Constant", "params": {}, "lr": lr}, "stage": stage,
             "label": label, "epochs": epochs, "seed": seed,
             "val_acc_curve": [0.8] * (epochs if state == TrialState.COMPLETE else 1)}
    return optuna.trial.FrozenTrial(
        number=number, state=state, value=0.8 if state == TrialState.COMPLETE else None,
        datetime_start=None, datetime_complete=None, params={}, distributions={},
        user_attrs=attrs, system_attrs={}, trial_id=number, intermediate_values={})


def test_a_contest_run_is_named_by_its_role_label_and_length_and_best_is_the_standing():
    """Each line names a contest run's role, label, own length (not the study's) and LR as its
    record says; "best" is what the `leader` callback (the CLI: the contest's standing at the
    study's length) says, not the best single run."""
    from search import record

    clock, out = Clock(), io.StringIO()
    p = Progress(live=False, stream=out, clock=clock,
                 leader=lambda study: f"leader: {len(study.trials)} trials read")
    study = _study()
    study.set_user_attr(record.Study.IDENTITY, {"contest": {"shape_trials": 6}})
    p.start(study, target=3)
    assert p.lines()[-1] == "  leader: 0 trials read"
    p.trial_started(_fixed(0, TrialState.RUNNING, "reference", "linear to zero", 1, 0.1 / 3))
    assert "running trial 0 reference linear to zero at 1 epoch: starting" in "\n".join(
        p.lines())
    clock.now += 2
    p.epoch(0, 1, 0.8)
    assert "trial 0 reference linear to zero at 1 epoch: epoch 1/1 done" in "\n".join(p.lines())
    p.trial_finished(study, _fixed(0, TrialState.COMPLETE, "reference", "linear to zero", 1,
                                   0.1 / 3))
    p.trial_started(_fixed(1, TrialState.RUNNING, "race", "schedule-free SGD", 4, 1.0, seed=2))
    p.trial_finished(study, _fixed(1, TrialState.COMPLETE, "race", "schedule-free SGD", 4, 1.0,
                                   seed=2))
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("[1/3] trial 0 reference linear to zero at 1 epoch, LR 0.03333: "
                               "val_acc 0.8000 (complete); leader: 0 trials read; ")
    assert lines[1].startswith("[2/3] trial 1 race schedule-free SGD at 4 epochs, LR 1, seed 2: "
                               "val_acc 0.8000 (complete); leader: 0 trials read; ")


TMUX = shutil.which("tmux")


@pytest.mark.skipif(TMUX is None, reason="needs tmux")
def test_live_display_in_a_terminal_during_a_tiny_run(tmp_path):
    """A real `run` in a tmux pane: the panel shows the ETA, epoch n/N, and its elapsed clock
    moves while one epoch (2 s) is still running."""
    import sys

    study = write_study(tmp_path, "live", trials=3, epochs=3, sleep=2.0)
    session = f"t{uuid.uuid4().hex[:8]}"
    pythonpath = ENV["PYTHONPATH"]
    # COLUMNS: the pane's width (one inherited from the caller would make rich wrap the rows)
    cmd = (f"cd {tmp_path} && COLUMNS=160 PYTHONPATH={pythonpath} {sys.executable} -m search run "
           f"--study {study} --storage sqlite:///{tmp_path}/s.db; sleep 30")
    subprocess.run([TMUX, "new-session", "-d", "-s", session, "-x", "160", "-y", "20", cmd],
                   check=True)
    try:
        screens = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            screen = subprocess.run([TMUX, "capture-pane", "-p", "-t", session],
                                    capture_output=True, text=True).stdout
            screens.append(screen)
            if "ETA" in screen and re.search(r"epoch 2/3 done", screen):
                break
            time.sleep(0.3)
        text = screens[-1]
        assert "finished" in text and "/3" in text, text
        assert re.search(r"ETA \d+s", text), text
        assert re.search(r"epoch \d/3 done", text), text
        # the clock moves within one epoch: two screens a second apart differ in elapsed
        first = re.search(r"elapsed (\S+)", text).group(1)
        time.sleep(1.3)
        later = subprocess.run([TMUX, "capture-pane", "-p", "-t", session],
                               capture_output=True, text=True).stdout
        assert re.search(r"elapsed (\S+)", later).group(1) != first, later
    finally:
        subprocess.run([TMUX, "kill-session", "-t", session], capture_output=True)


def test_worker_processes_trials_are_read_from_the_store():
    """`--jobs`: the parent reads each running trial from the store: its worker (the pid on
    this machine), family, epochs and clock; the ETA shares the work among the workers."""
    from datetime import datetime, timedelta

    from search.progress import HOST

    clock, now = Clock(), datetime(2026, 12, 5, 12, 0, 0)
    p = Progress(live=False, stream=io.StringIO(), clock=clock)
    p.start(_study(), target=4)
    p.parallel(2)

    def running(number, pid, epochs, ago):
        return optuna.trial.FrozenTrial(
            number=number, state=TrialState.RUNNING, value=None,
            datetime_start=now - timedelta(seconds=ago), datetime_complete=None,
            params={"scheduler": "StepLR"}, distributions={}, user_attrs={},
            system_attrs={"worker": f"{HOST}{pid}"}, trial_id=number,
            intermediate_values={e: 0.5 + e / 10 for e in range(1, epochs + 1)})

    p.track([running(0, 4242, 1, 65), running(1, 4343, 0, 3)], now)
    text = "\n".join(p.lines())
    assert "worker 4242 trial 0 StepLR at 4 epochs: epoch 1/4 done  val acc 0.6000  1m05s" in text
    assert "worker 4343 trial 1 StepLR at 4 epochs: starting" in text
    assert "starting ..." not in text
    clock.now += 10
    p.track([running(0, 4242, 2, 75), running(1, 4343, 1, 13)], now + timedelta(seconds=10))
    assert ("worker 4242 trial 0 StepLR at 4 epochs: epoch 2/4 done  val acc 0.7000  1m15s"
            in "\n".join(p.lines()))
    # an epoch: trial 0's second; a start: trial 1 began 13 s before its first epoch ended
    assert p.measured_pace() == pace.Pace(10.0, 3.0)
    # epochs left: 2 + 3 of the running ones, 2 trials x 4 to start, 2 side by side
    assert p.eta() == pytest.approx(((2 + 3 + 8) * 10.0 + 2 * 3.0) / 2)


@pytest.mark.skipif(TMUX is None, reason="needs tmux")
def test_live_display_shows_each_workers_trial(tmp_path):
    """`run --jobs 2` in a tmux pane: a line per worker with its trial, family, epoch and clock
    (not one `starting ...` for the whole run), and an ETA."""
    import sys

    study = write_study(tmp_path, "live", trials=6, epochs=4, sleep=2.0)
    session = f"t{uuid.uuid4().hex[:8]}"
    cmd = (f"cd {tmp_path} && COLUMNS=160 PYTHONPATH={ENV['PYTHONPATH']} {sys.executable} -m "
           f"search run "
           f"--study {study} --storage sqlite:///{tmp_path}/s.db --jobs 2; sleep 30")
    subprocess.run([TMUX, "new-session", "-d", "-s", session, "-x", "160", "-y", "20", cmd],
                   check=True)
    line = re.compile(r"worker (\d+) trial \d+ \w+ at 4 epochs: epoch \d/4 done  val acc "
                      r"[\d.]+  \d+s")
    workers: set[str] = set()
    screen = ""
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (len(workers) < 2
                                               or not re.search(r"ETA \d+", screen)):
            screen = subprocess.run([TMUX, "capture-pane", "-p", "-t", session],
                                    capture_output=True, text=True).stdout
            workers |= set(line.findall(screen))
            time.sleep(0.3)
        assert len(workers) == 2, screen
        assert re.search(r"ETA \d+", screen), screen
    finally:
        subprocess.run([TMUX, "kill-session", "-t", session], capture_output=True)

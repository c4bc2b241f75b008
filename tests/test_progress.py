"""The progress display: its ETA arithmetic on a fake clock, the piped line per trial, and the
live panel in a real terminal (tmux) during a tiny run: ETA, epoch n/N, a clock that moves
between epochs."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import time
import uuid

import optuna
import pytest
from optuna.trial import TrialState
from workers_support import ENV, write_study

from search.progress import Progress, duration, eta_seconds


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


def _study(*trials):
    study = optuna.create_study(direction="maximize")
    study.set_user_attr("epochs", 4)
    study.add_trials(list(trials))
    return study


class FakeTrial:
    def __init__(self, number, family):
        self.number, self.params = number, {"scheduler": family}


def test_duration_and_eta_arithmetic():
    assert [duration(s) for s in (0, 45.9, 62, 3725)] == ["0s", "45s", "1m02s", "1h02m"]
    assert eta_seconds(3, 2.5, 1.0, 10.0) == (3 * 2.5 + 1.0) * 10.0
    assert eta_seconds(3, 2.5, 1.0, None) is None
    assert eta_seconds(-1, 4, 0, 2.0) == 0.0  # more running than the target leaves: nothing


def test_eta_uses_the_pruning_rate_so_far_and_the_measured_epoch_time():
    """Store: one complete trial (4 epochs) and one pruned after 2: 3 epochs per trial.
    Here: trial 2 runs 2 epochs, 5 s apart (start-up before the first epoch is not counted)."""
    clock, out = Clock(), io.StringIO()
    p = Progress(live=False, stream=out, clock=clock)
    study = _study(_trial(0, TrialState.COMPLETE, 0.9, 4, "Constant"),
                   _trial(1, TrialState.PRUNED, None, 2))
    p.start(study, target=6)
    assert p.eta() is None  # no epoch measured yet
    p.trial_started(FakeTrial(2, "StepLR"))
    clock.now += 80  # loading data
    p.epoch(2, 1, 0.6)
    clock.now += 5
    p.epoch(2, 2, 0.7)
    assert p.seconds_per_epoch() == 5.0
    # 3 trials still to start x 3 epochs + trial 2's 1 epoch left, at 5 s each
    assert p.eta() == pytest.approx((3 * 3 + 1) * 5.0)
    assert "running trial 2 StepLR: epoch 2/4 done  val acc 0.7000  1m25s" in "\n".join(
        p.lines())
    assert "best 0.9000 Constant (trial 0)" in p.lines()[-1]
    assert "finished 2/6 (1 complete, 1 pruned)" in p.lines()[0]


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
    assert lines[0] == ("[1/3] trial 0 StepLR: 0.8000 (complete); best 0.8000 StepLR (trial 0)"
                        "; ETA 16s")  # 2 trials x 4 epochs x 2 s
    # 2.5 epochs per trial now (4 and 1), 2 s each: 1 trial left
    assert lines[1] == ("[2/3] trial 1 Constant: 0.5000 (pruned after epoch 1/4); best "
                        "0.8000 StepLR (trial 0); ETA 5s")
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
    assert "running trial 0 StepLR: starting" in text and "loading data ..." not in text


TMUX = shutil.which("tmux")


@pytest.mark.skipif(TMUX is None, reason="needs tmux")
def test_live_display_in_a_terminal_during_a_tiny_run(tmp_path):
    """A real `run` in a tmux pane: the panel shows the ETA, epoch n/N, and its elapsed clock
    moves while one epoch (2 s) is still running."""
    import sys

    study = write_study(tmp_path, "live", trials=3, epochs=3, sleep=2.0)
    session = f"t{uuid.uuid4().hex[:8]}"
    pythonpath = ENV["PYTHONPATH"]
    cmd = (f"cd {tmp_path} && PYTHONPATH={pythonpath} {sys.executable} -m search run "
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

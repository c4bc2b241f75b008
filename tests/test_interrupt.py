"""After an interruption, the person is told which trial it was and what became of it.

Ctrl-C (the CLI's line, exit 130) and SIGTERM (the engine's log line, exit 0), one process or
worker processes: each names the trial numbers that ended as FAIL with end_reason
`interrupted`, read back from the store here. The signal is sent once the trials are seen
training (an epoch reported), and an epoch lasts far longer than the signal takes.
"""

from __future__ import annotations

import signal

from optuna.trial import TrialState
from workers_support import finish, start, trials, wait_for, write_study

from search.progress import interruption


def _interrupted(url: str) -> list[int]:
    ts = trials(url)
    assert not [t for t in ts if t.state == TrialState.RUNNING]
    fails = [t for t in ts if t.state == TrialState.FAIL]
    assert {t.user_attrs.get("end_reason") for t in fails} == {"interrupted"}
    return sorted(t.number for t in fails)


def _stop(tmp_path, sig: int, jobs: int = 1) -> tuple[int, str, list[int]]:
    """A run of 1-second epochs, `sig` once `jobs` trials have reported an epoch."""
    study = write_study(tmp_path, trials=6, epochs=60, sleep=1.0)
    url = f"sqlite:///{tmp_path / 's.db'}"
    proc = start("run", "--study", str(study), "--storage", url, "--jobs", str(jobs),
                 cwd=tmp_path)
    wait_for(lambda: len([t for t in trials(url) if t.state == TrialState.RUNNING
                          and t.intermediate_values]) == jobs, 120, f"{jobs} trials training")
    proc.send_signal(sig)
    code, _, err = finish(proc, 120)
    assert "Traceback" not in err, err
    return code, err, _interrupted(url)


def test_interruption_names_the_trials():
    assert interruption([7]) == "trial 7 ended as FAIL (end_reason = interrupted)"
    assert interruption([3, 4]) == "trials 3, 4 ended as FAIL (end_reason = interrupted)"
    assert interruption([]) == "the trials in flight ended as FAIL (end_reason = interrupted)"


def test_ctrl_c_says_which_trial_and_that_a_new_one_takes_its_place(tmp_path):
    code, err, stopped = _stop(tmp_path, signal.SIGINT)
    assert code == 130 and len(stopped) == 1
    assert err.strip().splitlines()[-1] == (
        f"interrupted: trial {stopped[0]} ended as FAIL (end_reason = interrupted); it does "
        "not count toward --trials, and the same command run again samples a new trial in "
        "its place")


def test_sigterm_logs_which_trial(tmp_path):
    code, err, stopped = _stop(tmp_path, signal.SIGTERM)
    assert code == 0 and len(stopped) == 1
    assert (f"stopped by SIGTERM: trial {stopped[0]} ended as FAIL (end_reason = interrupted);"
            " running again goes on from the finished trials") in err


def test_ctrl_c_with_workers_names_every_workers_trial(tmp_path):
    code, err, stopped = _stop(tmp_path, signal.SIGINT, jobs=2)
    assert code == 130 and len(stopped) == 2
    assert err.strip().splitlines()[-1].startswith(
        f"interrupted: trials {stopped[0]}, {stopped[1]} ended as FAIL")

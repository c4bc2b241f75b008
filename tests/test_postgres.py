"""Many workers on one PostgreSQL study, against the real server of this machine.

Each test has its own database. Workers run the fast fake objective (tests/fake_objectives.py)
with heartbeat_interval = 1 s and a grace period of 5-10 s, so a dead worker's trial is
noticed within seconds even on a busy machine.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import optuna
import psycopg
import pytest
from workers_support import (
    alive,
    check_exact,
    children,
    cluster,
    finish,
    finished,
    running,
    start,
    trials,
    wait_for,
    write_study,
)
from workers_support import pg_url as pg_url  # noqa: F401 (fixture)

from search import cli, compat, record, runner, storage
from search.config import load_study

optuna.logging.set_verbosity(optuna.logging.WARNING)
FAIL = optuna.trial.TrialState.FAIL


def _dbname(url: str) -> str:
    return url.rsplit("/", 1)[1]


def test_six_workers_finish_exactly_sixty_trials_and_never_show_the_password(tmp_path, pg_url):
    secret = "pw-" + os.urandom(6).hex()  # trust auth here: the server ignores it
    study = write_study(tmp_path, trials=60)
    proc = start("run", "--study", str(study), "--jobs", "6", cwd=tmp_path,
                 env={"SEARCH_STORAGE": pg_url.replace("postgres@", f"postgres:{secret}@")})
    wait_for(lambda: len(children(proc.pid)) == 6 and running(pg_url), 120, "workers at work")
    for pid in [proc.pid, *children(proc.pid)]:  # what `ps` shows
        assert secret not in Path(f"/proc/{pid}/cmdline").read_text()
    code, out, err = finish(proc, 300)
    assert code == 0, err
    ts = check_exact(pg_url, 60)
    assert len(ts) == 60 and all(t.state != FAIL for t in ts)
    assert len({t.system_attrs["worker"] for t in ts}) > 1  # the work was shared
    assert "60 finished trials" in out and "postgres:***@" in out
    # Not in the output, the progress display, the trials or the study's attributes.
    s = optuna.load_study(study_name="fast", storage=pg_url)
    stored = repr([(t.user_attrs, t.system_attrs) for t in ts])
    system = compat.storage_of(s).get_study_system_attrs(compat.study_id(s))
    stored += repr((s.user_attrs, system))
    assert secret not in out + err + stored


def test_killed_workers_trials_fail_after_the_grace_period_and_are_retried(tmp_path, pg_url):
    study = write_study(tmp_path, trials=12, epochs=10, sleep=0.2, grace=5)
    proc = start("run", "--study", str(study), "--jobs", "3", cwd=tmp_path,
                 env={"SEARCH_STORAGE": pg_url})
    workers = wait_for(lambda: len(children(proc.pid)) == 3 and children(proc.pid), 60,
                       "three workers")

    def pid_of(t):  # None for a trial being claimed (RUNNING, its worker not written yet)
        if "worker" not in t.system_attrs:
            return None
        host, pid = t.system_attrs["worker"].rsplit(":", 1)
        assert host == os.uname().nodename
        return int(pid)

    def busy():  # two workers in the middle of a trial (it has reported an epoch)
        pids = {pid_of(t) for t in running(pg_url) if t.intermediate_values}
        return sorted(pids & set(workers))[:2] if len(pids) >= 2 and finished(pg_url) else None

    killed = wait_for(busy, 90, "two trials in flight")
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    victims = [t for t in running(pg_url) if pid_of(t) in killed]  # they can never finish
    assert victims
    code, out, err = finish(proc, 150)
    assert code == 0, err
    ts = check_exact(pg_url, 12)
    by_number = {t.number: t for t in ts}
    for victim in victims:
        dead = by_number[victim.number]
        assert dead.state == FAIL and dead.user_attrs["end_reason"] == "worker_lost"
        (retry,) = [t for t in ts if t.system_attrs.get("failed_trial") == victim.number]
        # the retry keeps every parameter the dead trial had drawn (a trial killed right after
        # it started has drawn only some: the retry draws the rest)
        assert retry.state in record.FINISHED and dead.params.items() <= retry.params.items()
    assert "exited with signal 9" in err


def test_terminated_connections_lose_nothing(tmp_path, pg_url):
    # ~1 s a trial, 30 trials over 3 workers: work remains while connections are killed
    study = write_study(tmp_path, trials=30, epochs=5, sleep=0.2)
    proc = start("run", "--study", str(study), "--jobs", "3", cwd=tmp_path,
                 env={"SEARCH_STORAGE": pg_url})
    wait_for(lambda: finished(pg_url) >= 3, 90, "three finished trials")
    workers = children(proc.pid)
    with psycopg.connect(f"host=127.0.0.1 user=postgres dbname={_dbname(pg_url)}",
                         autocommit=True) as con:
        for _ in range(2):
            killed = con.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                 "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                                 ).fetchone()[0]
            assert killed >= 3  # every worker had a connection
            time.sleep(1.5)
    assert finished(pg_url) < 30, "the run ended before the check: make its trials slower"
    assert all(alive(pid) for pid in workers)  # no worker exited
    code, out, err = finish(proc, 150)
    assert code == 0, err
    ts = check_exact(pg_url, 30)
    assert not [t.number for t in ts if t.state == FAIL]  # nothing was lost
    assert "exited with" not in err and "Traceback" not in err


@pytest.mark.slow
def test_postgres_down_for_twenty_seconds(tmp_path, pg_url):
    study = write_study(tmp_path, trials=15, epochs=3, sleep=0.1, grace=5)
    proc = start("run", "--study", str(study), "--jobs", "3", cwd=tmp_path,
                 env={"SEARCH_STORAGE": pg_url})
    wait_for(lambda: finished(pg_url) >= 3 and running(pg_url), 90, "trials in flight")
    workers = children(proc.pid)
    try:
        cluster("stop")
        time.sleep(20)
        assert all(alive(pid) for pid in workers)  # waiting, not crashed
    finally:
        cluster("start")
    code, out, err = finish(proc, 150)
    assert code == 0, err
    assert "unreachable" in err and "reachable again" in err
    ts = check_exact(pg_url, 15)
    for t in ts:  # a trial failed while the database was away was retried to the end
        if t.state == FAIL:
            assert t.user_attrs["end_reason"] in ("worker_lost", "storage_error")
            assert any(r.system_attrs.get("failed_trial") == t.number for r in ts), t.number
    assert "Traceback" not in err


def test_sigterm_ends_the_trial_in_flight_and_exits_0(tmp_path, pg_url):
    study = write_study(tmp_path, trials=5, epochs=40, sleep=0.1)
    proc = start("run", "--study", str(study), cwd=tmp_path, env={"SEARCH_STORAGE": pg_url})
    wait_for(lambda: [t for t in running(pg_url) if len(t.intermediate_values) >= 2], 90,
             "a trial in flight")
    proc.send_signal(signal.SIGTERM)
    code, out, err = finish(proc, 60)
    assert code == 0, err
    ts = trials(pg_url)
    assert not [t for t in ts if t.state == optuna.trial.TrialState.RUNNING]
    (stopped,) = [t for t in ts if t.state == FAIL]
    assert stopped.user_attrs["end_reason"] == "interrupted"
    assert len(stopped.intermediate_values) < 40
    assert "Traceback" not in err


def test_sigterm_to_the_jobs_parent_stops_every_worker_cleanly(tmp_path, pg_url):
    """What `docker compose stop` does to a worker container started with --jobs."""
    study = write_study(tmp_path, trials=20, epochs=40, sleep=0.1)
    proc = start("run", "--study", str(study), "--jobs", "2", cwd=tmp_path,
                 env={"SEARCH_STORAGE": pg_url})
    wait_for(lambda: len([t for t in running(pg_url) if t.intermediate_values]) == 2, 90,
             "two trials in flight")
    workers = children(proc.pid)
    proc.send_signal(signal.SIGTERM)
    code, out, err = finish(proc, 60)
    assert code == 0, err
    assert not any(alive(pid) for pid in workers)
    ts = trials(pg_url)
    assert not [t for t in ts if t.state == optuna.trial.TrialState.RUNNING]
    assert [t.user_attrs["end_reason"] for t in ts if t.state == FAIL] == ["interrupted"] * 2


# ---------------------------------------------------------------------------------------
# Bad input and secrets


def _main(capsys, *args: str) -> tuple[int, str]:
    code = cli.main(list(args))
    return code, capsys.readouterr().err


def test_unreachable_database_is_one_clear_line_within_ten_seconds(tmp_path, capsys):
    study = write_study(tmp_path)
    began = time.monotonic()
    code, err = _main(capsys, "run", "--study", str(study), "--storage",
                      "postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
    assert time.monotonic() - began < 10
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "cannot open storage postgresql+psycopg://postgres@127.0.0.1:1/nowhere" in err


def test_rejected_login_names_the_problem_but_not_the_password(tmp_path, capsys, monkeypatch):
    study = write_study(tmp_path)
    secret = "pw-Very$ecret-7"
    monkeypatch.setenv("SEARCH_STORAGE", "postgresql+psycopg://nosuchrole:"
                       f"{secret.replace('$', '%24')}@127.0.0.1:5432/postgres")
    code, err = _main(capsys, "run", "--study", str(study))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert 'role "nosuchrole" does not exist' in err and "***" in err
    assert secret not in err and "Very" not in err


@pytest.mark.parametrize("other", ["direction", "objective"])
def test_a_conflicting_study_of_the_same_name_is_refused(tmp_path, capsys, pg_url, other):
    study = write_study(tmp_path)
    if other == "direction":
        optuna.create_study(study_name="fast", storage=pg_url, direction="minimize")
        expect = "already exists in this storage with direction minimize"
    else:
        clash = tmp_path / "clash.toml"
        clash.write_text(study.read_text().replace("fake_objectives:train",
                                                   "fake_objectives:train_other"))
        runner.create_or_load(load_study(str(clash)), pg_url)
        expect = "already exists with objective = 'fake_objectives:train_other'"
    before = trials(pg_url)
    code, err = _main(capsys, "run", "--study", str(study), "--storage", pg_url)
    assert code == 2 and expect in err and len(err.strip().splitlines()) == 1
    assert trials(pg_url) == before  # nothing of this file's was mixed in


def test_a_password_on_the_command_line_is_warned_about(capsys):
    url = "postgresql+psycopg://u:hunter2@127.0.0.1/db"
    assert storage.resolve_url(url) == url
    err = capsys.readouterr().err
    assert "visible to every user in `ps`" in err and "hunter2" not in err

"""Faults as a user meets them: one line, exit 2, the store intact and nothing left RUNNING.

A full disk (a tiny tmpfs where this machine lets us mount one, else SQLite's page limit,
which fails writes with the same SQLITE_FULL), a read-only store, a PostgreSQL database that
refuses writes, devices this machine lacks, an objective that does not import, and the hints
printed at the end of a run.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import uuid
from pathlib import Path

import optuna
import pytest
import sqlalchemy
import torch
from conftest import run_cli
from workers_support import ENV, admin, write_study
from workers_support import pg_url as pg_url  # noqa: F401 (fixture)

from search import cli


def _states(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return dict(con.execute("select state, count(*) from trials group by state").fetchall())


def _one_line(err: str) -> str:
    """The one error line (progress lines "[n/N] trial ..." of finished trials aside)."""
    lines = [line for line in err.strip().splitlines() if not line.startswith("[")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def tmpfs(tmp_path):
    """A 4 MiB tmpfs (root only; skipped elsewhere, where the page-limit test still runs)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()})")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(mnt: Path, leave_kib: int) -> None:
    free = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize // 1024
    with open(mnt / "filler", "wb") as f:
        f.write(b"\0" * max(0, free - leave_kib) * 1024)


def test_a_full_disk_mid_run_ends_the_trial_as_fail_in_one_line(tmp_path, tmpfs):
    study = write_study(tmp_path, trials=2, epochs=3, sleep=0)
    url = f"sqlite:///{tmpfs / 's.db'}"
    r = run_cli("run", "--study", str(study), "--storage", url, cwd=tmp_path, env=ENV)
    assert r.returncode == 0, r.stderr
    _fill(tmpfs, leave_kib=72)  # room for a trial to start, not to finish
    r = run_cli("run", "--study", str(study), "--storage", url, "--trials", "40", cwd=tmp_path,
                env=ENV)
    line = _one_line(r.stderr)
    assert r.returncode == 2 and "refuses writes (database or disk is full)" in line
    states = _states(tmpfs / "s.db")
    assert states.get("COMPLETE") == 2 and "RUNNING" not in states
    failed = optuna.load_study(study_name="fast", storage=url).get_trials(
        states=(optuna.trial.TrialState.FAIL,))
    assert all(t.user_attrs.get("end_reason") == "storage_error" for t in failed)


def test_a_store_on_a_read_only_filesystem_is_one_line(tmp_path, tmpfs):
    study = write_study(tmp_path, trials=2, epochs=2, sleep=0)
    url = f"sqlite:///{tmpfs / 's.db'}"
    assert run_cli("run", "--study", str(study), "--storage", url, cwd=tmp_path,
                   env=ENV).returncode == 0
    before = (tmpfs / "s.db").read_bytes()
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    r = run_cli("run", "--study", str(study), "--storage", url, "--trials", "4", cwd=tmp_path,
                env=ENV)
    assert r.returncode == 2 and "read-only" in _one_line(r.stderr)
    assert (tmpfs / "s.db").read_bytes() == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to a chmod 444 file anyway")
def test_a_read_only_store_file_is_one_line(tmp_path):
    study = write_study(tmp_path, trials=2, epochs=2, sleep=0)
    assert run_cli("run", "--study", str(study), cwd=tmp_path, env=ENV).returncode == 0
    (tmp_path / "search.db").chmod(0o444)
    r = run_cli("run", "--study", str(study), "--trials", "4", cwd=tmp_path, env=ENV)
    assert r.returncode == 2 and ("read-only" in r.stderr or "readonly" in r.stderr)
    _one_line(r.stderr)
    assert "RUNNING" not in _states(tmp_path / "search.db")


def test_writes_refused_by_sqlite_page_limit_in_process(tmp_path, capsys):
    """Where no tmpfs can be mounted: SQLite's max_page_count fails writes as a full disk."""
    study = write_study(tmp_path, trials=2, epochs=3, sleep=0)
    db = tmp_path / "s.db"
    args = ["run", "--study", str(study), "--storage", f"sqlite:///{db}"]
    assert cli.main(args) == 0
    with sqlite3.connect(db) as con:
        pages = con.execute("PRAGMA page_count").fetchone()[0]

    def cap(dbapi_conn, record):
        dbapi_conn.execute(f"PRAGMA max_page_count = {pages + 1}")

    sqlalchemy.event.listen(sqlalchemy.engine.Engine, "connect", cap)
    try:
        assert cli.main([*args, "--trials", "200"]) == 2
    finally:
        sqlalchemy.event.remove(sqlalchemy.engine.Engine, "connect", cap)
    assert "database or disk is full" in _one_line(capsys.readouterr().err)
    assert "RUNNING" not in _states(db)


def test_a_postgres_database_that_refuses_writes(tmp_path, pg_url):  # noqa: F811
    study = write_study(tmp_path, trials=2, epochs=2, sleep=0)
    assert run_cli("run", "--study", str(study), "--storage", pg_url, cwd=tmp_path,
                   env=ENV).returncode == 0
    with admin() as con:
        con.execute(f'ALTER DATABASE "{pg_url.rsplit("/", 1)[1]}" '
                    "SET default_transaction_read_only = on")
    r = run_cli("run", "--study", str(study), "--storage", pg_url, "--trials", "4",
                cwd=tmp_path, env=ENV)
    assert r.returncode == 2 and "read-only transaction" in _one_line(r.stderr)
    trials = optuna.load_study(study_name="fast", storage=pg_url).trials
    assert len(trials) == 2 and all(t.state.is_finished() for t in trials)


@pytest.mark.parametrize("device", ["potato", "gpu", "cuda:7", "cuda", "mps"])
def test_a_device_this_machine_lacks_is_one_line(tmp_path, capsys, device):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    assert cli.main(["run", "--study", "smoke", "--device", device]) == 2
    line = _one_line(capsys.readouterr().err)
    assert ("this machine has (cpu" in line or "must be \"auto\"" in line) and device in line
    assert not (tmp_path / "search.db").exists()


def test_a_device_in_the_study_file_is_checked_before_the_store(tmp_path, capsys):
    study = tmp_path / "dev.toml"
    study.write_text(write_study(tmp_path).read_text().replace(
        "sleep = 0.05", 'sleep = 0.05\ndevice = "cuda:7"'))
    if torch.cuda.device_count() > 7:
        pytest.skip("this machine has cuda:7")
    assert cli.main(["run", "--study", str(study)]) == 2
    assert "cuda:7" in _one_line(capsys.readouterr().err)
    assert not (tmp_path / "search.db").exists()


def test_an_objective_typo_leaves_no_study_behind(tmp_path, capsys):
    good = write_study(tmp_path, trials=1, epochs=1, sleep=0)
    typo = tmp_path / "fast-typo.toml"
    typo.write_text(good.read_text().replace("fake_objectives:train", "fake_objectivs:train"))
    assert cli.main(["run", "--study", str(typo)]) == 2
    assert "'fake_objectivs' cannot be imported" in _one_line(capsys.readouterr().err)
    assert not (tmp_path / "search.db").exists()
    assert cli.main(["run", "--study", str(good)]) == 0  # the fixed file: same name, accepted


def test_the_end_of_run_hint_reaches_the_same_store(tmp_path, capsys):
    study = write_study(tmp_path, trials=1, epochs=1, sleep=0)
    assert cli.main(["run", "--study", str(study), "--storage", "sqlite:///other.db"]) == 0
    out = capsys.readouterr().out
    assert f"`python -m search best --study {study} --storage sqlite:///other.db`" in out
    assert cli.main(["best", "--study", str(study), "--storage", "sqlite:///other.db"]) == 0


def test_a_storage_that_is_no_url_is_shown_as_typed(tmp_path, capsys):
    name = f"nonsense-{uuid.uuid4().hex[:4]}"
    assert cli.main(["run", "--study", "smoke", "--storage", name]) == 2
    assert f"storage URL '{name}' is not a database URL" in _one_line(capsys.readouterr().err)

"""search.storage: where the URL comes from, secrets kept out of text, riding out outages."""

from __future__ import annotations

import sqlite3
import threading
import time

import optuna
import psycopg
import pytest
import sqlalchemy.exc
from optuna.exceptions import StorageInternalError
from workers_support import pg_url as pg_url  # noqa: F401 (fixture)

from search import compat, storage
from search.errors import UserError


def test_url_precedence_flag_env_file_study_default(tmp_path, monkeypatch):
    secret_file = tmp_path / "url"
    secret_file.write_text("postgresql+psycopg://u:pw@db/from-file\n")
    secret_file.chmod(0o600)
    assert storage.resolve_url(None, None) == storage.DEFAULT_URL
    assert storage.resolve_url(None, "sqlite:///study.db") == "sqlite:///study.db"
    monkeypatch.setenv(storage.ENV_FILE, str(secret_file))
    assert (storage.resolve_url(None, "sqlite:///study.db")
            == "postgresql+psycopg://u:pw@db/from-file")
    monkeypatch.setenv(storage.ENV, "sqlite:///env.db")
    assert storage.resolve_url(None, "sqlite:///study.db") == "sqlite:///env.db"
    assert storage.resolve_url("sqlite:///flag.db", "sqlite:///study.db") == "sqlite:///flag.db"


def test_a_missing_url_file_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv(storage.ENV_FILE, str(tmp_path / "nope"))
    with pytest.raises(UserError, match=r"`SEARCH_STORAGE_FILE` must name a readable file"):
        storage.resolve_url()


def test_redact_and_scrub_hide_the_password_in_every_spelling():
    url = "postgresql+psycopg://me:p%40ss%2Fw0rd@db:5432/search"
    assert storage.redact(url) == "postgresql+psycopg://me:***@db:5432/search"
    assert storage.redact("not a url") == "'not a url'"  # what was typed, less any password
    assert storage.redact("x://me:s3cret@db:notaport/x") == "'x://me:***@db:notaport/x'"
    text = "failed for p@ss/w0rd, p%40ss%2Fw0rd and p%40ss%2Fw0rd again"
    assert storage.scrub(text, url) == "failed for ***, *** and *** again"
    assert storage.scrub("nothing secret", "sqlite:///x.db") == "nothing secret"


def _operational(orig: Exception) -> sqlalchemy.exc.OperationalError:
    try:
        raise sqlalchemy.exc.OperationalError("SELECT 1", {}, orig) from orig
    except sqlalchemy.exc.OperationalError as e:
        return e


def _wrapped(e: Exception) -> StorageInternalError:  # as optuna's RDBStorage raises them
    try:
        raise StorageInternalError("commit failed") from e
    except StorageInternalError as wrapped:
        return wrapped


@pytest.mark.parametrize("error, transient", [
    (_operational(psycopg.OperationalError("server closed the connection")), True),
    (_wrapped(_operational(psycopg.errors.AdminShutdown("terminating connection"))), True),
    (_operational(sqlite3.OperationalError("database is locked")), True),
    (_operational(sqlite3.OperationalError("no such table: trials")), False),
    (sqlalchemy.exc.IntegrityError("INSERT", {}, psycopg.errors.UniqueViolation("dup")), False),
    (ValueError("bad value"), False),
])
def test_only_errors_a_retry_can_cure_are_transient(error, transient):
    assert storage.is_transient(error) is transient


def test_retry_backs_off_until_the_database_is_back(caplog):
    calls = []

    def flaky():
        calls.append(time.monotonic())
        if len(calls) < 4:
            raise _operational(psycopg.OperationalError("connection refused"))
        return "ok"

    assert storage.retry(flaky, url="postgresql+psycopg://u:secret@h/db") == "ok"
    gaps = [b - a for a, b in zip(calls, calls[1:], strict=False)]
    assert gaps[2] > gaps[0]  # exponential backoff
    assert "unreachable" in caplog.text and "reachable again" in caplog.text
    assert "secret" not in caplog.text


def test_retry_gives_up_after_its_patience_and_at_once_on_real_errors():
    def down():
        raise _operational(psycopg.OperationalError("connection refused"))

    began = time.monotonic()
    with pytest.raises(sqlalchemy.exc.OperationalError):
        storage.retry(down, patience_s=1.0)
    assert 1.0 <= time.monotonic() - began < 4
    abort = threading.Event()
    abort.set()  # told to stop: waits ABORT_PATIENCE_S at most, whatever the patience
    began = time.monotonic()
    with pytest.raises(sqlalchemy.exc.OperationalError):
        storage.retry(down, patience_s=600, abort=abort)
    assert time.monotonic() - began < storage.ABORT_PATIENCE_S + 3
    calls = []
    with pytest.raises(ValueError):
        storage.retry(lambda: calls.append(1) or int("x"))
    assert calls == [1]


def test_resilient_storage_retries_every_database_call(tmp_path, monkeypatch):
    store = storage.resilient(storage.open_storage(f"sqlite:///{tmp_path / 's.db'}"))
    assert isinstance(store, storage.Resilient)
    study = optuna.create_study(storage=store, study_name="s")
    trial = study.ask()
    real, failures = compat.backend_of(store).set_trial_user_attr, []

    def lose_the_connection_twice(*args, **kwargs):
        if len(failures) < 2:
            failures.append(1)
            raise _wrapped(_operational(sqlite3.OperationalError("database is locked")))
        return real(*args, **kwargs)

    monkeypatch.setattr(compat.backend_of(store), "set_trial_user_attr", lose_the_connection_twice)
    trial.set_user_attr("k", 1)
    assert failures == [1, 1] and study.trials[0].user_attrs == {"k": 1}
    with store.direct(), pytest.raises(StorageInternalError):  # claims fail and start over
        failures.clear()
        trial.set_user_attr("k", 2)


def _hold_lock(store, name: str, log: list, hold: float) -> None:
    with storage.claim_lock(store, name):
        log.append(("in", time.monotonic()))
        time.sleep(hold)
        log.append(("out", time.monotonic()))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_claim_lock_lets_one_worker_in_at_a_time(tmp_path, backend, request):
    url = (f"sqlite:///{tmp_path / 'c.db'}" if backend == "sqlite"
           else request.getfixturevalue("pg_url"))
    stores = [storage.open_storage(url) for _ in range(2)]  # as two processes would have
    log: list = []
    threads = [threading.Thread(target=_hold_lock, args=(s, "study", log, 0.4)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [k for k, _ in sorted(log, key=lambda e: e[1])] == ["in", "out", "in", "out"]
    if backend == "postgresql":  # another study is not held up (SQLite: one lock a file)
        with storage.claim_lock(stores[0], "other study"):
            with storage.claim_lock(stores[1], "yet another"):
                pass
    for s in stores:
        s.engine.dispose()


def test_unreachable_server_fails_fast_without_the_password():
    began = time.monotonic()
    with pytest.raises(UserError) as e:
        storage.open_storage("postgresql+psycopg://me:hunter2@127.0.0.1:1/db")
    assert time.monotonic() - began < 10
    assert "cannot open storage postgresql+psycopg://me:***@127.0.0.1:1/db" in str(e.value)
    assert "hunter2" not in str(e.value)


def test_a_url_file_others_can_read_is_refused(tmp_path, monkeypatch):
    url_file = tmp_path / "url"
    url_file.write_text("postgresql+psycopg://u:pw@db/x\n")
    monkeypatch.setenv(storage.ENV_FILE, str(url_file))
    for mode in (0o644, 0o640, 0o604):
        url_file.chmod(mode)
        with pytest.raises(UserError, match=rf"other users can read \(mode {mode:o}\); run "
                                            rf"`chmod 600 {url_file}`") as e:
            storage.resolve_url()
        assert "pw" not in str(e.value)
    url_file.chmod(0o600)
    assert storage.resolve_url() == "postgresql+psycopg://u:pw@db/x"
    url_file.write_bytes(b"\xff\xfe")
    with pytest.raises(UserError, match="not UTF-8 text"):
        storage.resolve_url()


def test_read_only_opening_never_creates_a_sqlite_file(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    with pytest.raises(UserError, match=r"storage sqlite:///\S+x\.db does not exist"):
        storage.open_existing(url)
    assert list(tmp_path.iterdir()) == []
    optuna.create_study(study_name="s", storage=storage.open_storage(url))
    assert optuna.get_all_study_names(storage.open_existing(url)) == ["s"]


@pytest.mark.parametrize("command", [
    ["best", "--study", "smoke"], ["best", "--study", "own"], ["report", "--study", "smoke"],
    ["dashboard", "--study", "smoke", "--port", "0"], ["validate", "--study", "smoke"],
    ["studies"],
])
@pytest.mark.parametrize("flag", [[], ["--storage", "sqlite:///x.db"]])
def test_commands_that_read_never_create_a_store(tmp_path, capsys, command, flag):
    """A missing SQLite file (the default or --storage): one line, exit 2, no file left."""
    from search import cli

    assert cli.main([*command, *flag]) == 2
    err = capsys.readouterr().err
    name = "x.db" if flag else "search.db"
    assert err == (f"error: storage sqlite:///{name} does not exist (no file {tmp_path / name})"
                   "; name the store a study was run into with --storage or $SEARCH_STORAGE\n")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("error, fault", [
    (_operational(sqlite3.OperationalError("database or disk is full")),
     "database or disk is full"),
    (_wrapped(_operational(sqlite3.OperationalError("attempt to write a readonly database"))),
     "attempt to write a readonly database"),
    (_operational(psycopg.errors.ReadOnlySqlTransaction(
        "cannot execute INSERT in a read-only transaction")),
     "cannot execute INSERT in a read-only transaction"),
    (_operational(psycopg.errors.DiskFull("could not extend file")), "could not extend file"),
    (OSError(28, "No space left on device"), "No space left on device"),
    (_operational(sqlite3.OperationalError("database is locked")), None),
    (_operational(psycopg.OperationalError("server closed the connection")), None),
    (ValueError("bad value"), None),
])
def test_write_faults_are_told_from_outages_and_bugs(error, fault):
    assert storage.write_fault(error) == fault
    assert storage.is_write_fault(error) is (fault is not None)
    if fault is not None:
        assert not storage.is_transient(error)  # no point waiting 10 minutes for disk space


def test_user_errors_scrub_passwords_whatever_built_them():
    e = UserError(f"bad value {['postgresql+psycopg://me:hunter2@db:5432/x']!r}\nand more")
    assert "hunter2" not in str(e) and "me:***@db" in str(e) and "\n" not in str(e)

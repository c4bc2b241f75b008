"""Storage URL resolution, RDBStorage options, surviving a flaky database, redaction of secrets.

Order: the --storage flag, then SEARCH_STORAGE, then the file named by SEARCH_STORAGE_FILE,
then the study file, then the embedded default `sqlite:///search.db` in the working directory.
A password is never printed: every URL shown to a person goes through `redact`, every error
text through `scrub`.

Workers talk to the database through `Resilient`: a storage call that fails because the
server went away (a dropped connection, a restart, a locked SQLite file) is retried with
capped exponential backoff for up to RECONNECT_PATIENCE_S, so a trial in flight carries on
once the database is back. Opening a storage is not retried: a wrong URL fails at once.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import hashlib
import logging
import os
import random
import shlex
import sqlite3
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote_plus

import optuna
import sqlalchemy
import sqlalchemy.exc
from optuna.storages import _CachedStorage
from sqlalchemy.engine import make_url

from search.errors import MAX_SHOWN, UserError, hide_secrets

__all__ = [
    "DEFAULT_URL",
    "ENV",
    "ENV_FILE",
    "Resilient",
    "check",
    "claim_lock",
    "close_failed",
    "hint_command",
    "is_transient",
    "is_write_fault",
    "open_storage",
    "orphan_trial_ids",
    "redact",
    "resilient",
    "resolve",
    "retry",
    "scrub",
    "write_fault",
]

DEFAULT_URL = "sqlite:///search.db"
ENV = "SEARCH_STORAGE"
ENV_FILE = "SEARCH_STORAGE_FILE"  # a file holding the URL (docker secrets, a chmod 600 file)
SQLITE_BUSY_TIMEOUT_S = 60  # a writer waits this long for the lock instead of failing
CONNECT_TIMEOUT_S = 5  # an unreachable server fails within this, instead of hanging
RECONNECT_PATIENCE_S = 600.0  # how long a worker waits for a database that went away
ABORT_PATIENCE_S = 5.0  # the same once the worker was told to stop (SIGTERM, Ctrl-C)
MAX_BACKOFF_S = 5.0
LOCK_TIMEOUT_S = 60  # a claim waits this long for another worker's claim (PostgreSQL)

log = logging.getLogger(__name__)
T = TypeVar("T")


def _from_file() -> str | None:
    """The URL in the file named by SEARCH_STORAGE_FILE; refused where others may read it."""
    name = os.environ.get(ENV_FILE)
    if not name:
        return None
    try:
        with open(name, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            raw = f.read(64 * 1024)
        text = raw.decode("utf-8").strip()
    except OSError as e:
        raise UserError(f"`{ENV_FILE}` must name a readable file but got {name!r} "
                        f"({e.strerror})") from None
    except UnicodeDecodeError:
        raise UserError(f"`{ENV_FILE}` must name a text file holding a URL but {name!r} is "
                        "not UTF-8 text") from None
    if mode & (stat.S_IRGRP | stat.S_IROTH):  # a password others can read is no secret
        raise UserError(f"`{ENV_FILE}` names {name!r}, which other users can read "
                        f"(mode {stat.S_IMODE(mode):o}); run `chmod 600 {name}` first")
    return text.splitlines()[0].strip() if text else None


def resolve(flag: str | None = None, study_file: str | None = None) -> str:
    """The storage URL to use, by the project's order of precedence."""
    if flag and _password(flag):
        print("warning: a password given with --storage is visible to every user in `ps`; "
              f"put the URL in {ENV} or a file named by {ENV_FILE}", file=sys.stderr)
    for url in (flag, os.environ.get(ENV), _from_file(), study_file):
        if url:
            return url
    return DEFAULT_URL


def _password(url: str) -> str | None:
    try:
        return make_url(url).password
    except Exception:
        return None


def redact(url: str) -> str:
    """The URL with any password replaced by ***, safe for logs and error messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL at all: show what was typed, less anything like a password
        text = hide_secrets(url)
        return repr(text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "...")


def hint_command(rest: str, flag: str | None) -> str:
    """`python -m search <rest>` as a user should type it to reach the store just used.

    Storage from the environment, the study file or the default is found again by the same
    command; a --storage flag is repeated, unless it holds a password (never printed).
    """
    cmd = f"python -m search {rest}"
    if not flag:
        return cmd
    if _password(flag):
        return f"{cmd}, with {ENV} set to the URL given to --storage ({redact(flag)})"
    return f"{cmd} --storage {shlex.quote(flag)}"


def scrub(text: str, url: str | None) -> str:
    """`text` with the password of `url` (as typed or URL-encoded) replaced by ***."""
    secret = _password(url) if url else None
    if not secret:
        return text
    for form in {secret, quote_plus(secret), quote_plus(secret).replace("+", "%20")}:
        text = text.replace(form, "***")
    return text


def check(url: str) -> None:
    """Fail on a URL that cannot work before anything is read or written (one line)."""
    try:
        make_url(url).get_dialect()  # an unknown kind of database fails here
    except sqlalchemy.exc.ArgumentError:  # NoSuchModuleError included
        raise UserError(
            f"storage URL {redact(url)} is not a database URL; use e.g. sqlite:///search.db "
            "or postgresql+psycopg://user@host/db"
        ) from None
    path = _sqlite_path(url)
    if path is not None and not path.parent.is_dir():
        raise UserError(
            f"storage directory {path.parent} does not exist; create it or choose another "
            "--storage sqlite:///PATH"
        )


def _sqlite_path(url: str) -> Path | None:
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return Path(u.database)


def _prepare_sqlite(path: Path) -> None:
    """WAL lets readers (the dashboard) work while a worker writes; set once per file."""
    with sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S) as con:
        con.execute("PRAGMA journal_mode=WAL")


def engine_kwargs(url: str) -> dict:
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    kwargs: dict = {"pool_pre_ping": True}  # a dropped connection is replaced, not fatal
    if backend == "postgresql":
        # Keepalives: a server that vanished without closing the socket is noticed in ~1 min.
        kwargs["connect_args"] = {
            "connect_timeout": CONNECT_TIMEOUT_S, "application_name": "schedsearch",
            "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
            "keepalives_count": 3,
        }
    return kwargs


def open_storage(
    url: str,
    *,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    stale_trial_callback=None,
) -> optuna.storages.RDBStorage:
    """An RDBStorage for `url`; anything that cannot be opened is one UserError line."""
    check(url)
    path = _sqlite_path(url)
    try:
        if path is not None:
            _prepare_sqlite(path)
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine_kwargs(url),
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            heartbeat_stale_trial_callback=stale_trial_callback,
        )
    except UserError:
        raise
    except (sqlalchemy.exc.SQLAlchemyError, sqlite3.Error, ImportError, ValueError) as e:
        reason = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
        if path is not None and path.exists() and not (
                os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)):
            reason += " (the file or its directory is read-only; SQLite in WAL mode needs both " \
                "writable, even to read)"
        raise UserError(f"cannot open storage {redact(url)}: {scrub(reason, url)}") from None


# ---------------------------------------------------------------------------------------
# Surviving a flaky database


def is_transient(exc: BaseException) -> bool:
    """True for errors that a retry can cure: the server went away, a lock, a busy SQLite."""
    if write_fault(exc) is not None:  # a full disk or a read-only store: no wait cures it
        return False
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, sqlalchemy.exc.DBAPIError) and e.connection_invalidated:
            return True
        if isinstance(e, (sqlalchemy.exc.InterfaceError, sqlalchemy.exc.TimeoutError)):
            return True  # a closed connection; no free connection in the pool
        if isinstance(e, sqlite3.OperationalError):
            return any(w in str(e) for w in ("locked", "busy"))  # not "no such table"
        if type(e).__module__.startswith("psycopg") and isinstance(e, Exception):
            import psycopg

            return isinstance(e, (psycopg.OperationalError, psycopg.InterfaceError))
        e = e.__cause__ or getattr(e, "orig", None) or e.__context__
    return False


# SQLite's words for a store that takes no writes; PostgreSQL's SQLSTATEs for the same:
# disk full, out of memory, read-only transaction (a standby), no privilege, I/O error.
_SQLITE_FAULTS = ("readonly", "read-only", "disk is full", "disk i/o error")
_PG_FAULTS = ("53100", "53200", "25006", "42501", "58030")
_OS_FAULTS = (errno.ENOSPC, errno.EROFS, errno.EDQUOT)


def write_fault(exc: BaseException) -> str | None:
    """What makes the store refuse writes (a full disk, a read-only file), or None."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if isinstance(e, sqlite3.DatabaseError) and any(w in text.lower()
                                                        for w in _SQLITE_FAULTS):
            return text
        if getattr(e, "sqlstate", None) in _PG_FAULTS:
            return text
        if isinstance(e, OSError) and e.errno in _OS_FAULTS:
            return os.strerror(e.errno)
        e = e.__cause__ or getattr(e, "orig", None) or e.__context__
    return None


def is_write_fault(exc: BaseException) -> bool:
    return write_fault(exc) is not None


def close_failed(store: Any, trial_id: int, reason: str) -> bool:
    """Best effort: end a trial as FAIL with `end_reason` in a store that refuses writes.

    A SQLite WAL checkpoint first lets the next write reuse the log's space on a full disk.
    """
    from optuna.trial import TrialState

    rdb = _rdb(store)
    if rdb is not None and _sqlite_path(rdb.url) is not None:
        try:
            with rdb.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        except Exception:
            pass
    target = getattr(store, "_backend", store)  # no cache, no retries: it works now or never
    try:
        target.set_trial_user_attr(trial_id, "end_reason", reason)
    except Exception:
        pass
    try:
        return bool(target.set_trial_state_values(trial_id, TrialState.FAIL))
    except Exception:
        return False


class _Outage:
    """One warning when the database goes away and one when it is back, whatever the threads."""

    def __init__(self) -> None:
        self.lock, self.since = threading.Lock(), None

    def failed(self, e: BaseException, url: str | None) -> None:
        with self.lock:
            if self.since is None:
                self.since = time.monotonic()
                reason = str(getattr(e, "orig", None) or e.__cause__ or e).strip().splitlines()
                log.warning("storage%s unreachable (%s); retrying",
                            f" {redact(url)}" if url else "",
                            scrub(reason[0] if reason else "", url))

    def ok(self) -> None:
        if self.since is None:
            return
        with self.lock:
            if self.since is not None:
                log.warning("storage reachable again after %.0f s", time.monotonic() - self.since)
                self.since = None


_outage = _Outage()


def retry(
    call: Callable[[], T],
    *,
    patience_s: float = RECONNECT_PATIENCE_S,
    abort: threading.Event | None = None,
    url: str | None = None,
) -> T:
    """`call()`, retried on transient errors with capped exponential backoff and jitter."""
    delay, since = 0.2, None
    while True:
        try:
            result = call()
        except Exception as e:
            if not is_transient(e):
                raise
            now = time.monotonic()
            since = now if since is None else since
            limit = ABORT_PATIENCE_S if abort is not None and abort.is_set() else patience_s
            if now - since >= limit:
                raise
            _outage.failed(e, url)
            pause = min(delay * (0.5 + random.random()), since + limit - now)
            if abort is not None and not abort.is_set():
                abort.wait(pause)  # a stop request cuts the pause short
            else:
                time.sleep(pause)
            delay = min(delay * 2, MAX_BACKOFF_S)
            continue
        _outage.ok()
        return result


class Resilient(_CachedStorage):
    """optuna's cached RDB storage whose every database call survives a short outage.

    `abort` (set on SIGTERM/Ctrl-C) shortens the wait; `direct()` turns retries off in this
    thread, for steps that must fail and start over as a whole (claiming a trial).
    """

    def __init__(self, backend: optuna.storages.RDBStorage) -> None:
        super().__init__(backend)
        self.abort = threading.Event()
        self.patience_s = RECONNECT_PATIENCE_S
        self._local = threading.local()

    @property
    def url(self) -> str:
        return self._backend.url

    @contextmanager
    def direct(self) -> Iterator[None]:
        self._local.direct = True
        try:
            yield
        finally:
            self._local.direct = False

    def _call(self, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if getattr(self._local, "direct", False):
            return method(self, *args, **kwargs)
        return retry(lambda: method(self, *args, **kwargs), patience_s=self.patience_s,
                     abort=self.abort, url=self.url)


def _retried(name: str) -> Callable[..., Any]:
    method = getattr(_CachedStorage, name)

    @functools.wraps(method)
    def call(self: Resilient, *args: Any, **kwargs: Any) -> Any:
        return self._call(method, *args, **kwargs)

    return call


# Every call that reaches the database (creating or deleting a study is left to fail at once).
for _name in (
    "set_study_user_attr", "set_study_system_attr", "get_study_id_from_name",
    "get_study_name_from_id", "get_study_directions", "get_study_user_attrs",
    "get_study_system_attrs", "get_all_studies", "create_new_trial", "set_trial_param",
    "get_trial_id_from_study_id_trial_number", "get_best_trial", "set_trial_state_values",
    "set_trial_intermediate_value", "set_trial_user_attr", "set_trial_system_attr",
    "get_trial", "get_all_trials", "record_heartbeat", "_get_stale_trial_ids",
):
    setattr(Resilient, _name, _retried(_name))


def resilient(storage: optuna.storages.BaseStorage | str) -> optuna.storages.BaseStorage:
    """`storage` wrapped in Resilient where it is an RDB storage; other storages as they are."""
    if isinstance(storage, str):
        storage = open_storage(storage)
    if isinstance(storage, _CachedStorage) and not isinstance(storage, Resilient):
        storage = storage._backend
    if isinstance(storage, optuna.storages.RDBStorage):
        return Resilient(storage)
    return storage


def _rdb(storage: Any) -> optuna.storages.RDBStorage | None:
    backend = getattr(storage, "_backend", storage)
    return backend if isinstance(backend, optuna.storages.RDBStorage) else None


@contextmanager
def claim_lock(storage: optuna.storages.BaseStorage, name: str) -> Iterator[None]:
    """Only one worker at a time, on any machine, counts and starts trials of study `name`.

    PostgreSQL: a transaction-level advisory lock (freed by the server if the worker dies).
    SQLite: an flock on `<file>.lock` beside the database. Other back ends: no lock.
    """
    rdb = _rdb(storage)
    url = make_url(rdb.url) if rdb is not None else None
    if url is not None and url.get_backend_name() == "postgresql":
        key = int.from_bytes(hashlib.sha1(f"schedsearch:{name}".encode()).digest()[:8], "big",
                             signed=True)
        conn = rdb.engine.connect()
        try:
            conn.execute(sqlalchemy.text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT_S}s'"))
            conn.execute(sqlalchemy.text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
            yield
        finally:
            try:  # ending the transaction frees the lock; a dead connection freed it already
                conn.rollback()
                conn.close()
            except sqlalchemy.exc.SQLAlchemyError:
                conn.invalidate()
    elif url is not None and _sqlite_path(rdb.url) is not None:
        with open(f"{_sqlite_path(rdb.url)}.lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
    else:
        yield


def orphan_trial_ids(storage: optuna.storages.BaseStorage, study_id: int) -> set[int]:
    """RUNNING trials without any heartbeat row (their worker died before its first beat)."""
    rdb = _rdb(storage)
    if rdb is None:
        return set()
    from optuna.storages._rdb import models

    t, h = models.TrialModel.__table__, models.TrialHeartbeatModel.__table__
    query = (sqlalchemy.select(t.c.trial_id)
             .select_from(t.outerjoin(h, h.c.trial_id == t.c.trial_id))
             .where(t.c.study_id == study_id, t.c.state == "RUNNING", h.c.trial_id.is_(None)))
    with rdb.engine.connect() as conn:
        return {row[0] for row in conn.execute(query)}

"""Surviving a flaky database: which errors a wait can cure, retries, `Resilient` calls.

Workers talk to the database through `Resilient`: a storage call that fails because the
server went away (a dropped connection, a restart, a locked SQLite file) is retried with
capped exponential backoff (tenacity) for up to RECONNECT_PATIENCE_S, so a trial in flight
carries on once the database is back. A full disk or a read-only store is no outage: it is
told apart (`write_fault`) and never waited for.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, TypeVar

import filelock
import optuna
import sqlalchemy.exc
import tenacity

from search import compat, record
from search.compat import CachedStorage
from search.storage.urls import open_storage, redact, scrub, sqlite_path

__all__ = ["ABORT_PATIENCE_S", "RECONNECT_PATIENCE_S", "Resilient", "close_failed",
           "is_transient", "is_write_fault", "resilient", "retried", "retry", "write_fault"]

RECONNECT_PATIENCE_S = 600.0  # how long a worker waits for a database that went away
ABORT_PATIENCE_S = 5.0  # the same once the worker was told to stop (SIGTERM, Ctrl-C)
MAX_BACKOFF_S = 5.0

log = logging.getLogger("search.storage")
T = TypeVar("T")


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
        if isinstance(e, (sqlalchemy.exc.InterfaceError, sqlalchemy.exc.TimeoutError,
                          filelock.Timeout)):
            return True  # a closed connection; no free connection in the pool; a held lock
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


def close_failed(store: optuna.storages.BaseStorage, trial_id: int, reason: str) -> bool:
    """Best effort: end a trial as FAIL with `end_reason` in a store that refuses writes.

    A SQLite WAL checkpoint first lets the next write reuse the log's space on a full disk.
    """
    from optuna.trial import TrialState

    rdb = compat.rdb_of(store)
    if rdb is not None and sqlite_path(rdb.url) is not None:
        try:
            with rdb.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        except Exception:
            pass
    target = compat.backend_of(store)  # no cache, no retries: it works now or never
    try:
        record.store_end(target, trial_id, reason)
    except Exception:
        pass
    try:
        return bool(target.set_trial_state_values(trial_id, TrialState.FAIL))
    except Exception:
        return False


class _Outage:
    """One warning when the database goes away and one when it is back, whatever the threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.since: float | None = None  # when the database went away

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
    """`call()`, retried on transient errors with capped exponential backoff and jitter.

    Gives up (re-raising the last error) after `patience_s`, or ABORT_PATIENCE_S once `abort`
    is set (a stop request also cuts the current pause short).
    """

    def out_of_patience(state: tenacity.RetryCallState) -> bool:
        limit = ABORT_PATIENCE_S if abort is not None and abort.is_set() else patience_s
        return (state.seconds_since_start or 0.0) >= limit

    def pause(seconds: float) -> None:
        if abort is not None and not abort.is_set():
            abort.wait(seconds)
        else:
            time.sleep(seconds)

    result = tenacity.Retrying(
        retry=tenacity.retry_if_exception(is_transient), stop=out_of_patience,
        wait=tenacity.wait_exponential_jitter(multiplier=0.2, max=MAX_BACKOFF_S, jitter=0.1),
        # before_sleep: the attempt failed, so it has an outcome holding an exception
        sleep=pause,
        before_sleep=lambda s: _outage.failed(s.outcome.exception(), url),  # type: ignore[union-attr,arg-type]
        reraise=True,
    )(call)
    _outage.ok()
    return result


class Resilient(CachedStorage):
    """optuna's cached RDB storage whose every database call survives a short outage.

    `abort` (set on SIGTERM/Ctrl-C) shortens the wait; `direct()` turns retries off in this
    thread, for steps that must fail and start over as a whole (claiming a trial); every call
    runs inside `shield()` (the engine's Signals set it: a signal waits for the call to end).
    """

    def __init__(self, backend: optuna.storages.RDBStorage) -> None:
        super().__init__(backend)
        self.abort = threading.Event()
        self.shield: Callable[[], AbstractContextManager[Any]] = nullcontext
        self.patience_s = RECONNECT_PATIENCE_S
        self._local = threading.local()

    @property
    def url(self) -> str | None:
        return compat.url_of(self)

    @contextmanager
    def direct(self) -> Iterator[None]:
        self._local.direct = True
        try:
            yield
        finally:
            self._local.direct = False

    def call(self, read: Callable[[], T]) -> T:
        """`read()`, a query beside optuna's storage API (search.compat's counts), with the
        retries and the shield of every call."""
        return self._call(lambda _self: read())

    def _call(self, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self.shield():
            if getattr(self._local, "direct", False):
                return method(self, *args, **kwargs)
            return retry(lambda: method(self, *args, **kwargs), patience_s=self.patience_s,
                         abort=self.abort, url=self.url)


def _retried(name: str) -> Callable[..., Any]:
    method = getattr(CachedStorage, name)

    @functools.wraps(method)
    def call(self: Resilient, *args: Any, **kwargs: Any) -> Any:
        return self._call(method, *args, **kwargs)

    return call


# Every call that reaches the database (creating or deleting a study is left to fail at once).
RETRIED = (
    "set_study_user_attr", "set_study_system_attr", "get_study_id_from_name",
    "get_study_name_from_id", "get_study_directions", "get_study_user_attrs",
    "get_study_system_attrs", "get_all_studies", "create_new_trial", "set_trial_param",
    "get_trial_id_from_study_id_trial_number", "get_best_trial", "set_trial_state_values",
    "set_trial_intermediate_value", "set_trial_user_attr", "set_trial_system_attr",
    "get_trial", "get_all_trials", "record_heartbeat",
)
for _name in RETRIED:
    setattr(Resilient, _name, _retried(_name))


def resilient(storage: optuna.storages.BaseStorage | str) -> optuna.storages.BaseStorage:
    """`storage` wrapped in Resilient where it is an RDB storage; other storages as they are."""
    if isinstance(storage, str):
        storage = open_storage(storage)
    if isinstance(storage, Resilient):
        return storage
    rdb = compat.rdb_of(storage)
    return Resilient(rdb) if rdb is not None else storage


def retried(store: optuna.storages.BaseStorage, read: Callable[[], T]) -> T:
    """`read()` with `store`'s retries where it is Resilient (`Resilient.call`), else once."""
    return store.call(read) if isinstance(store, Resilient) else read()


"""The claim lock: one worker at a time, on any machine, counts and starts trials of a study.

PostgreSQL: a transaction-level advisory lock (the server frees it when the worker dies).
SQLite: a `filelock` on `<file>.lock` beside the database (the OS frees it with the process).
Both give up after LOCK_TIMEOUT_S with an error `is_transient` accepts, so a claim stuck
behind a hung worker is retried like an outage instead of hanging forever. Other back ends
(in-memory, one process): no lock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import filelock
import optuna
import sqlalchemy
import sqlalchemy.exc
from sqlalchemy.engine import make_url

from search.compat import rdb_of
from search.storage.urls import sqlite_path

__all__ = ["LOCK_TIMEOUT_S", "claim_lock"]

LOCK_TIMEOUT_S = 60  # a claim waits this long for another worker's claim


@contextmanager
def claim_lock(storage: optuna.storages.BaseStorage, name: str,
               timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the claim lock of study `name` in `storage` (see the module docstring)."""
    rdb = rdb_of(storage)
    url = make_url(rdb.url) if rdb is not None else None
    if rdb is not None and url is not None and url.get_backend_name() == "postgresql":
        key = int.from_bytes(hashlib.sha1(f"schedsearch:{name}".encode()).digest()[:8], "big",
                             signed=True)
        conn = rdb.engine.connect()
        try:
            conn.execute(sqlalchemy.text(f"SET LOCAL lock_timeout = '{int(timeout_s * 1000)}ms'"))
            conn.execute(sqlalchemy.text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
            yield
        finally:
            try:  # ending the transaction frees the lock; a dead connection freed it already
                conn.rollback()
                conn.close()
            except sqlalchemy.exc.SQLAlchemyError:
                conn.invalidate()
    elif rdb is not None and sqlite_path(rdb.url) is not None:
        with filelock.FileLock(f"{sqlite_path(rdb.url)}.lock", timeout=timeout_s):
            yield
    else:
        yield

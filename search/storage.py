"""Storage URL resolution, RDBStorage options, and redaction of secrets.

Order: the --storage flag, then SEARCH_STORAGE, then the study file, then the embedded
default `sqlite:///search.db` in the working directory. A password is never printed:
every URL shown to a person goes through `redact`.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import optuna
import sqlalchemy.exc
from sqlalchemy.engine import make_url

from search.errors import UserError

__all__ = ["DEFAULT_URL", "ENV", "open_storage", "redact", "resolve"]

DEFAULT_URL = "sqlite:///search.db"
ENV = "SEARCH_STORAGE"
SQLITE_BUSY_TIMEOUT_S = 60  # a writer waits this long for the lock instead of failing
CONNECT_TIMEOUT_S = 10  # an unreachable server fails within this, instead of hanging


def resolve(flag: str | None = None, study_file: str | None = None) -> str:
    """The storage URL to use, by the project's order of precedence."""
    for url in (flag, os.environ.get(ENV), study_file):
        if url:
            return url
    return DEFAULT_URL


def redact(url: str) -> str:
    """The URL with any password replaced by ***, safe for logs and error messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL at all: show nothing that could be a secret
        return "<unparsable storage URL>"


def _sqlite_path(url: str) -> Path | None:
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return Path(u.database)


def _prepare_sqlite(path: Path) -> None:
    """WAL lets readers (the dashboard) work while a worker writes; set once per file."""
    if not path.parent.is_dir():
        raise UserError(
            f"storage directory {path.parent} does not exist; create it or choose another "
            "--storage sqlite:///PATH"
        )
    with sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S) as con:
        con.execute("PRAGMA journal_mode=WAL")


def engine_kwargs(url: str) -> dict:
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    kwargs: dict = {"pool_pre_ping": True}  # a dropped connection is replaced, not fatal
    if backend == "postgresql":
        kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    return kwargs


def open_storage(
    url: str,
    *,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    stale_trial_callback=None,
) -> optuna.storages.RDBStorage:
    """An RDBStorage for `url`; anything that cannot be opened is one UserError line."""
    shown = redact(url)
    try:
        make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise UserError(
            f"storage URL {shown} is not a database URL; use e.g. sqlite:///search.db or "
            "postgresql+psycopg://user@host/db"
        ) from None
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
        if make_url(url).password:
            reason = reason.replace(str(make_url(url).password), "***")
        raise UserError(f"cannot open storage {shown}: {reason}") from None

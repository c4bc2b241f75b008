"""Storage URLs: where the URL comes from, opening it as an RDBStorage, redaction of secrets.

Order: the --storage flag, then SEARCH_STORAGE, then the file named by SEARCH_STORAGE_FILE,
then the study file, then the embedded default `sqlite:///search.db` in the working directory.
A password is never printed: every URL shown to a person goes through `redact`, every error
text through `scrub`. Opening a storage is not retried: a wrong URL fails at once. A command
that only reads opens it with `open_existing`, which never creates a SQLite file.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import sys
from pathlib import Path
from urllib.parse import quote_plus

import optuna
import sqlalchemy
import sqlalchemy.exc
from sqlalchemy.engine import make_url

from search.errors import MAX_SHOWN, UserError, hide_secrets

__all__ = ["DEFAULT_URL", "ENV", "ENV_FILE", "check", "engine_kwargs", "open_existing",
           "open_storage", "redact", "resolve_url", "scrub", "sqlite_path"]

DEFAULT_URL = "sqlite:///search.db"
ENV = "SEARCH_STORAGE"
ENV_FILE = "SEARCH_STORAGE_FILE"  # a file holding the URL (docker secrets, a chmod 600 file)
SQLITE_BUSY_TIMEOUT_S = 60  # a writer waits this long for the lock instead of failing
CONNECT_TIMEOUT_S = 5  # an unreachable server fails within this, instead of hanging


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


def resolve_url(flag: str | None = None, study_file: str | None = None) -> str:
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
    path = sqlite_path(url)
    if path is not None and not path.parent.is_dir():
        raise UserError(
            f"storage directory {path.parent} does not exist; create it or choose another "
            "--storage sqlite:///PATH"
        )


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for other databases and in-memory SQLite)."""
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
    path = sqlite_path(url)
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


def open_existing(url: str) -> optuna.storages.RDBStorage:
    """`open_storage` for a command that only reads a store (`best`, `report`, `studies`,
    `dashboard`, looking a study up): a SQLite file that does not exist is one line and is not
    created, so a mistyped URL leaves no empty store behind."""
    check(url)
    path = sqlite_path(url)
    if path is not None and not path.is_file():
        raise UserError(f"storage {redact(url)} does not exist (no file {path.absolute()}); "
                        f"name the store a study was run into with --storage or ${ENV}")
    return open_storage(url)

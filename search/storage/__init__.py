"""The study store: URLs and redaction (`urls`), the commands our messages suggest (`hints`),
surviving outages (`resilient`), the claim lock (`locks`). Callers use this package:
`storage.resolve_url`, `storage.open_storage`, ...
"""

from __future__ import annotations

from search.storage.hints import Reach, carried, hint_command, reached, toward
from search.storage.locks import LOCK_TIMEOUT_S, claim_lock
from search.storage.resilient import (
    ABORT_PATIENCE_S,
    RECONNECT_PATIENCE_S,
    Resilient,
    close_failed,
    is_transient,
    is_write_fault,
    resilient,
    retried,
    retry,
    write_fault,
)
from search.storage.urls import (
    DEFAULT_URL,
    ENV,
    ENV_FILE,
    check,
    engine_kwargs,
    open_existing,
    open_storage,
    redact,
    resolve_url,
    scrub,
    sqlite_path,
)

__all__ = [
    "ABORT_PATIENCE_S", "DEFAULT_URL", "ENV", "ENV_FILE", "LOCK_TIMEOUT_S",
    "RECONNECT_PATIENCE_S", "Reach", "Resilient", "carried", "check", "claim_lock",
    "close_failed", "engine_kwargs", "hint_command", "is_transient", "is_write_fault",
    "open_existing", "open_storage", "rdb_of", "reached", "redact", "resilient", "resolve_url",
    "retried", "retry", "scrub", "sqlite_path", "toward", "write_fault",
]

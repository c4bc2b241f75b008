"""Signals in every trial loop: SIGTERM ends the trial in flight as `interrupted` and the loop
returns (the process exits 0: a scheduler or `docker compose stop`); Ctrl-C does the same and
the process exits 130 (KeyboardInterrupt reaches the CLI).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

__all__ = ["Interrupted", "Signals"]


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, once the loop has closed what it interrupted: `trials`, their numbers."""

    def __init__(self, trials: list[int] | tuple[int, ...] = ()) -> None:
        super().__init__(*trials)
        self.trials = tuple(trials)


class Signals:
    """SIGTERM/SIGINT interrupt the training at once; bookkeeping in the store is shielded.

    Inside `interruptible()` the first signal raises KeyboardInterrupt where the training is;
    elsewhere (claiming, telling) it is only noted, and the loop stops at its next check.
    Store calls inside it (suggesting parameters, the Recorder's writes, reports) are shielded
    too: `store.shield` (storage.Resilient runs every call inside it) is `shielded`, so a signal
    that arrives during a call interrupts right after it, never inside SQLAlchemy.
    `store.abort` is set so that a wait for a database that is away is cut short.
    """

    def __init__(self, store: optuna.storages.BaseStorage | None = None) -> None:
        self._old: dict[int, Any] = {}  # the handlers install() replaced, by signal
        self.received: int | None = None
        self.interrupted: list[int] = []  # trials the loop ended as `interrupted`, by number
        self._inside = False
        self._store: Any = store  # read for a Resilient's optional `shield` and `abort`

    def install(self) -> Signals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
            if hasattr(self._store, "shield"):
                self._store.shield = self.shielded
        return self

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}
        if getattr(self._store, "shield", None) == self.shielded:
            self._store.shield = nullcontext

    def __enter__(self) -> Signals:
        return self.install()

    def __exit__(self, *exc: Any) -> None:
        self.restore()

    @property
    def terminated(self) -> bool:
        """SIGTERM was received: the loop ends cleanly (exit 0)."""
        return self.received == signal.SIGTERM

    def _handle(self, signum: int, frame: Any) -> None:
        first = self.received is None
        self.received = self.received or signum
        if isinstance(getattr(self._store, "abort", None), threading.Event):
            self._store.abort.set()  # stop waiting long for a database that is away
        if first and self._inside:
            self._inside = False
            raise KeyboardInterrupt

    @contextmanager
    def interruptible(self) -> Iterator[None]:
        if self.received:
            raise KeyboardInterrupt
        self._inside = True
        try:
            yield
        finally:
            self._inside = False

    @contextmanager
    def shielded(self) -> Iterator[None]:
        """A store update inside `interruptible()` that a signal must not cut in half; a
        signal received meanwhile interrupts right after it. Signals reach the main thread
        only: elsewhere (a heartbeat's thread) this shields nothing."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        was, self._inside = self._inside, False
        try:
            yield
        finally:
            self._inside = was
        if was and self.received:
            self._inside = False
            raise KeyboardInterrupt

    def sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while self.received is None and time.monotonic() < end:
            time.sleep(min(0.1, seconds))

    def reraise(self) -> None:
        """After the loop: Ctrl-C goes on to the CLI (exit 130); SIGTERM ends quietly."""
        if self.received is not None and not self.terminated:
            raise Interrupted(self.interrupted)

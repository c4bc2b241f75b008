"""The live progress display of `run`: trials finished / target, best so far, running epoch.

On a terminal it is a rich live line; otherwise (logs, CI) one plain line per finished
trial. No URL or secret is ever shown here.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

__all__ = ["Progress"]


class Progress:
    def __init__(self, live: bool | None = None, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.target = 0
        self.best: float | None = None
        self.running = ""
        self.started = time.monotonic()
        self._live: Any = None
        self._study: optuna.Study | None = None

    # 1. Hooks called by the runner.
    def start(self, study: optuna.Study, target: int) -> None:
        from search.runner import count

        self._study, self.target = study, target
        self._count = count
        try:
            self.best = study.best_value
        except ValueError:
            self.best = None
        if self.live:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(console=Console(file=self.stream), refresh_per_second=4,
                              transient=False)
            self._live.start()
        self._show()

    def epoch(self, number: int, epoch: int, val_acc: float) -> None:
        self.running = f"trial {number} epoch {epoch + 1}: val acc {val_acc:.4f}"
        if self.live:
            self._show()

    def trial_finished(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.state == TrialState.COMPLETE and (self.best is None or trial.value > self.best):
            self.best = trial.value
        family = trial.params.get("scheduler", "?")
        value = "-" if trial.value is None else f"{trial.value:.4f}"
        reason = trial.user_attrs.get("end_reason", trial.state.name.lower())
        self.running = f"last: trial {trial.number} {family} {value} ({reason})"
        if self.live:
            self._show()
        else:
            print(f"[{self._done()}/{self.target}] trial {trial.number} {family}: {value} "
                  f"({reason}); best {self._best()}", file=self.stream, flush=True)

    def close(self) -> None:
        if self._live is not None:
            self._show()
            self._live.stop()
            self._live = None

    # 2. Rendering.
    def _done(self) -> int:
        return self._count(self._study) if self._study is not None else 0

    def _best(self) -> str:
        return "-" if self.best is None else f"{self.best:.4f}"

    def _show(self) -> None:
        if self._live is None:
            return
        elapsed = time.monotonic() - self.started
        self._live.update(
            f"[bold]{self._study.study_name}[/]  finished {self._done()}/{self.target}  "
            f"best {self._best()}  {self.running}  [dim]{elapsed:.0f}s[/]"
        )

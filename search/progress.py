"""The live progress display of `run`: how far, how long, what runs now, what leads.

On a terminal it is a rich live panel redrawn four times a second, so its clocks move between
epochs; otherwise (logs, CI) one plain line per finished trial, ETA included. Counts use one
vocabulary everywhere: finished = complete + pruned (what `--trials` counts). No URL or
secret is ever shown here.

The ETA is remaining epochs x measured seconds per epoch. Remaining epochs: each trial still
to start is expected to train as many epochs as the finished ones did on average (so the
pruning rate so far is in it; the full budget until a trial has finished), plus what the
running trials have left. Seconds per epoch: wall time between the first and the latest epoch
this run (so data loading and compilation before the first epoch are left out; with trials
trained side by side it is their joint rate); where no epoch is seen here (worker processes),
wall time per epoch of the trials finished since the start.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import optuna
from optuna.trial import FrozenTrial, TrialState

__all__ = ["Progress", "duration", "eta_seconds", "interruption", "notify"]

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def duration(seconds: float) -> str:
    """45s, 4m02s, 1h05m: a clock that reads the same at every size."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def eta_seconds(
    to_start: int, epochs_per_trial: float, running_left: float, seconds_per_epoch: float | None
) -> float | None:
    """Seconds until the target: (trials to start x epochs each + epochs the running trials
    still have) x seconds per epoch; None while the rate is unknown."""
    if seconds_per_epoch is None:
        return None
    return (max(0, to_start) * epochs_per_trial + max(0.0, running_left)) * seconds_per_epoch


def interruption(trials: Sequence[int]) -> str:
    """What became of the trials a signal interrupted (their numbers; none known: the running
    one), for the line that says so (the CLI's on Ctrl-C, the engine's on SIGTERM)."""
    if not trials:
        return "the running trial ended as FAIL (end_reason = interrupted)"
    which = (f"trial {trials[0]}" if len(trials) == 1
             else "trials " + ", ".join(str(n) for n in trials))
    return f"{which} ended as FAIL (end_reason = interrupted)"


def notify(progress: Any, hook: str, *args: Any) -> None:
    """Call an optional hook (`phase`, `trial_started`) where the display has it: engines also
    take minimal displays that only know start / epoch / trial_finished."""
    method = getattr(progress, hook, None)
    if method is not None:
        method(*args)


def _epochs_reached(trial: FrozenTrial) -> int:
    curve = trial.user_attrs.get("val_acc_curve")
    return len(curve) if isinstance(curve, list) else len(trial.intermediate_values)


class _Running(NamedTuple):
    trial: Any  # optuna.Trial (its params are read for the family) or None
    started: float
    epoch: int  # epochs trained so far
    val_acc: float | None
    family: str


class Progress:
    def __init__(self, live: bool | None = None, stream: Any = None,
                 clock: Any = time.monotonic) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.clock = clock
        self.started = clock()
        self.target = 0
        self.budget: int | None = None  # epochs per trial (the study's `epochs`)
        self.name = ""
        self.done = {"complete": 0, "pruned": 0}
        self.best: tuple[float, str, int] | None = None  # value, family, trial number
        self.last = ""
        self.phase_text, self.phase_since = "starting", self.started
        self.running: dict[int, _Running] = {}
        self.reached: list[int] = []  # epochs reached by each finished trial (store + here)
        self.epoch_times: list[float] = []  # when each epoch ended, this run
        self.finished_here_epochs = 0
        self._lock = threading.Lock()  # the live thread renders while hooks update
        self._live: Any = None

    # 1. Hooks called by the engines.
    def phase(self, text: str) -> None:
        """What happens before the first epoch (opening the store, loading data, compiling)."""
        with self._lock:
            self.phase_text, self.phase_since = text, self.clock()
        self._start_live()

    def start(self, study: optuna.Study, target: int) -> None:
        """Read the study once: counts, the pruning rate so far, the best trial."""
        finished = study.get_trials(deepcopy=False, states=FINISHED)
        with self._lock:
            self.name, self.target = study.study_name, target
            budget = study.user_attrs.get("epochs")
            self.budget = int(budget) if isinstance(budget, (int, float)) else None
            for t in finished:
                self._count(t)
        self._start_live()

    def trial_started(self, trial: Any) -> None:
        """A trial begins (its family is read from its params once suggested)."""
        with self._lock:
            self.running[trial.number] = _Running(trial, self.clock(), 0, None,
                                                  _family(trial))

    def epoch(self, number: int, epoch: int, val_acc: float) -> None:
        """Trial `number` has trained `epoch` epochs (1..N, as the pruner's steps count)."""
        now = self.clock()
        with self._lock:
            old = self.running.get(number) or _Running(None, now, 0, None, "?")
            family = old.family if old.family != "?" else _family(old.trial)
            self.running[number] = old._replace(epoch=epoch, val_acc=val_acc, family=family)
            self.epoch_times.append(now)

    def trial_finished(self, study: optuna.Study, trial: FrozenTrial) -> None:
        with self._lock:
            self.running.pop(trial.number, None)
            self._count(trial)
            self.finished_here_epochs += _epochs_reached(trial)
            family = trial.params.get("scheduler", "?")
            value = "-" if trial.value is None else f"{trial.value:.4f}"
            reason = trial.user_attrs.get("end_reason", trial.state.name.lower())
            reached = _epochs_reached(trial)
            at = f" after epoch {self._of(reached)}" if trial.state == TrialState.PRUNED else ""
            if trial.state == TrialState.PRUNED and trial.value is None and reached:
                curve = trial.user_attrs.get("val_acc_curve") or [None]
                value = f"{curve[-1]:.4f}" if isinstance(curve[-1], float) else "-"
            self.last = f"trial {trial.number} {family}: {value} ({reason}{at})"
            line = (f"[{self._finished()}/{self.target}] {self.last}; best {self._best()}; "
                    f"{self._eta_text()}")
        if not self.live:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self._live is not None:
            self._live.refresh()
            self._live.stop()
            self._live = None

    # 2. Bookkeeping (under the lock).
    def _count(self, t: FrozenTrial) -> None:
        if t.state not in FINISHED:
            return
        self.done[t.state.name.lower()] += 1
        self.reached.append(_epochs_reached(t))
        if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value):
            if self.best is None or t.value > self.best[0]:
                self.best = (float(t.value), str(t.params.get("scheduler", "?")), t.number)

    def _finished(self) -> int:
        return self.done["complete"] + self.done["pruned"]

    def _of(self, n: int) -> str:
        return f"{n}/{self.budget}" if self.budget else str(n)

    def _best(self) -> str:
        if self.best is None:
            return "-"
        value, family, number = self.best
        return f"{value:.4f} {family} (trial {number})"

    def seconds_per_epoch(self) -> float | None:
        t = self.epoch_times
        if len(t) >= 2 and t[-1] > t[0]:
            return (t[-1] - t[0]) / (len(t) - 1)
        if not t and self.finished_here_epochs:
            return (self.clock() - self.started) / self.finished_here_epochs
        return None

    def eta(self) -> float | None:
        per_trial = (sum(self.reached) / len(self.reached) if self.reached and any(self.reached)
                     else float(self.budget or 1))
        running_left = sum(max(0.0, per_trial - r.epoch) for r in self.running.values())
        to_start = self.target - self._finished() - len(self.running)
        return eta_seconds(to_start, per_trial, running_left, self.seconds_per_epoch())

    def _eta_text(self) -> str:
        if self._finished() >= self.target:
            return "done"
        eta = self.eta()
        return "ETA after 2 epochs" if eta is None else f"ETA {duration(eta)}"

    # 3. Rendering: the live panel is re-rendered on every refresh, so its clocks tick.
    def _start_live(self) -> None:
        if not self.live or self._live is not None:
            return
        from rich.console import Console
        from rich.live import Live

        self._live = Live(_Panel(self), console=Console(file=self.stream),
                          refresh_per_second=4, transient=False)
        self._live.start()

    def lines(self) -> list[str]:
        """The live panel as plain lines (rich markup), newest state."""
        with self._lock:
            now = self.clock()
            c, p = self.done["complete"], self.done["pruned"]
            head = (f"[bold]{self.name or 'study'}[/]  finished {self._finished()}/{self.target}"
                    f" ({c} complete, {p} pruned)  elapsed {duration(now - self.started)}  "
                    f"[bold]{self._eta_text()}[/]")
            out = [head]
            if not self.epoch_times and not self.running and self._finished() < self.target:
                out.append(f"  {self.phase_text} ... {duration(now - self.phase_since)}")
            for number, r in sorted(self.running.items()):
                family = r.family if r.family != "?" else _family(r.trial)
                if r.epoch:
                    acc = f"  val acc {r.val_acc:.4f}" if r.val_acc is not None else ""
                    what = f"epoch {self._of(r.epoch)} done{acc}"
                else:
                    what = "starting (loading data, building the model)"
                out.append(f"  running trial {number} {family}: {what}  "
                           f"{duration(now - r.started)}")
            out.append(f"  best {self._best()}")
            if self.last:
                out.append(f"  last {self.last}")
            return out


class _Panel:
    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def __rich__(self) -> Any:
        from rich.text import Text

        return Text.from_markup("\n".join(self.progress.lines()))


def _family(trial: Any) -> str:
    """The family of a live optuna.Trial once suggested; "?" before (or without a trial)."""
    try:
        return str(trial.params.get("scheduler", "?")) if trial is not None else "?"
    except RuntimeError:  # the params dict changed size while copied (another thread)
        return "?"

"""The live progress display of `run`: how far, how long, what runs now, what leads.

On a terminal it is a rich live panel redrawn four times a second, so its clocks move between
epochs; otherwise (logs, CI) one plain line per finished trial, ETA included. Counts use one
vocabulary everywhere: finished = complete + pruned (what `--trials` counts). No URL or
secret is ever shown here. Every line names a run as `what_ran` reads it from its record (a
contest's role and label, its length, its LR: `lr_text`), and a contest's "best" is its
standing at the study's length (the `leader` the CLI passes), never a shorter run.

The ETA is the rule of `search.pace`: the epochs still to train (the study's pruner's
expectation for each trial, scaled by what the finished trials trained) x the measured seconds
per epoch, plus the trials still to start x the measured seconds to start one, shared among the
trials trained side by side. Seconds per epoch: between two epochs of the same trial, as seen
here; seconds to start a trial: its first epoch's wall time beyond that, for trials begun after
the run's first epoch (the first one also waits for data loading and compilation, once a run),
counted from the epoch before it where it trains alone (the previous trial's last: storing
that trial and claiming this one take time too); before this run has timed an epoch, the pace
of the trials the study already finished. A run made of stages (a contest) gives the display
its plan (`plan`): what it still trains, stage by stage and run by run (search.contest.work),
read again from the store as each trial starts and finishes; the ETA then counts those runs
and their lengths instead of the pruner's expectation for every trial. With worker processes
(`--jobs`) the display reads the running trials from the store (`track`): each worker's trial,
family, epoch and clock.
"""

from __future__ import annotations

import math
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, NamedTuple, Protocol

import optuna
from optuna.trial import FrozenTrial, TrialState

from search import pace, record
from search.goal import Goal

__all__ = ["Display", "Progress", "duration", "interruption", "lr_text", "notify", "what_ran"]

HOST = f"{socket.gethostname()}:"  # a worker on this machine is shown by its pid
_INTERRUPTED = f"{record.END_REASON} = {record.End.INTERRUPTED}"


def duration(seconds: float) -> str:
    """45s, 4m02s, 1h05m: a clock that reads the same at every size."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def lr_text(lr: float) -> str:
    """An LR as people read it: 4 significant digits (0.1, not 0.09999999999999999). Every
    line that shows an LR goes through it; code keeps the exact value (`schedules.lit`)."""
    return f"{float(lr):.4g}"


def what_ran(trial: optuna.Trial | FrozenTrial, contest: bool = False, budget: int | None = None,
             lr: bool = True) -> str:
    """What a trial runs, in words, for every line that names a run: its role in a contest
    ("reference", "shape", "race"), its name there (a fixed run's contest label: "linear to
    zero", "schedule-free SGD"; a shape's or a plain search's trial: its family), its length
    and its LR (a race run: and its seed), all read from its record: `reference linear to
    zero at 2 epochs, LR 0.3`. `budget`: the study's epochs, for a trial that has not yet
    recorded its own length; `lr=False`: without the LR (the live table's narrow rows)."""
    r = record.of(trial)
    fixed = r.fixed
    role = "" if not contest else (r.stage or "race") if fixed is not None else "shape"
    label = r.label if fixed is not None and r.label else record.family_of(trial)
    epochs = r.epochs or budget
    peak = (fixed or r.schedule or {}).get("lr", r.lr)
    out = f"{role} {label}" if role else label
    if epochs:
        out += f" at {epochs} epoch{'' if epochs == 1 else 's'}"
    if lr and isinstance(peak, (int, float)):
        out += f", LR {lr_text(peak)}"
    if role == "race" and r.seed is not None:
        out += f", seed {r.seed}"
    return out


def interruption(trials: Sequence[int]) -> str:
    """What became of the trials a signal interrupted (their numbers; none known: those in
    flight, e.g. an array's), for the line that says so (the CLI's on Ctrl-C, the engine's on
    SIGTERM)."""
    if not trials:
        return f"the trials in flight ended as FAIL ({_INTERRUPTED})"
    which = (f"trial {trials[0]}" if len(trials) == 1
             else "trials " + ", ".join(str(n) for n in trials))
    return f"{which} ended as FAIL ({_INTERRUPTED})"


def notify(progress: Display | None, hook: str, *args: Any) -> None:
    """Call an optional hook (`phase`, `trial_started`) where the display has it: engines also
    take minimal displays that only know start / epoch / trial_finished."""
    method = getattr(progress, hook, None)
    if method is not None:
        method(*args)


class Display(Protocol):
    """What the engines take for a progress display: `Progress`, or a minimal one that only
    knows these (the optional hooks go through `notify`)."""

    def start(self, study: optuna.Study, target: int) -> None: ...

    def epoch(self, number: int, epoch: int, val_acc: float | None) -> None: ...

    def trial_finished(self, study: optuna.Study, trial: FrozenTrial) -> None: ...


class _Running(NamedTuple):
    # optuna.Trial or FrozenTrial (its record and params are read for what it runs) or None
    trial: optuna.Trial | FrozenTrial | None
    started: float
    epoch: int  # epochs trained so far
    val_acc: float | None
    what: str | None  # what it runs (`what_ran`); None before its record or params say
    last: float  # when its latest epoch ended (or it started)
    worker: str | None = None  # the worker process training it (`--jobs`): its pid here
    timed: bool = False  # began after this run's first epoch: its start-up is a trial's own
    epochs: int | None = None  # its length (a contest's reference runs at each horizon)


class Progress:
    """`leader(study)`: where a contest stands and who leads it at the study's length, one line
    (the CLI passes the contest's standing; None: the best trial, a plain search's answer)."""

    def __init__(self, live: bool | None = None, stream: Any = None,
                 clock: Any = time.monotonic,
                 leader: Callable[[optuna.Study], str | None] | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.clock = clock
        self.started = clock()
        self.target = 0
        self.budget: int | None = None  # epochs per trial (the study's `epochs`)
        self.name = ""
        self.done = {"complete": 0, "pruned": 0}
        self.best: tuple[float, str, int] | None = None  # value, family, trial number
        self.goal = Goal()  # the study's (start): which value is best, and its name
        self.contest = False  # the study runs a contest (start): its runs have roles
        self.leader = leader
        self.standing: str | None = None  # `leader`'s line, as of the last finished trial
        self.last = ""
        self.phase_text, self.phase_since = "starting", self.started
        self.running: dict[int, _Running] = {}
        self.reached: list[int] = []  # epochs reached by each finished trial (store + here)
        self.epoch_times: list[float] = []  # when each epoch ended, this run
        self.epoch_seconds: list[float] = []  # epochs after a trial's first, this run
        self.first_seconds: list[float] = []  # a trial's start to its first epoch's end
        self.prior: list[float] = []  # epochs trial i is expected to train (search.pace)
        self.stored_pace: pace.Pace | None = None  # of the trials finished before this run
        self.side_by_side = 1  # trials trained at once (worker processes, array members)
        self.work_of: Callable[[Sequence[FrozenTrial]], pace.Work] | None = None  # `plan`
        self.work: pace.Work | None = None  # what the plan still trains, as last read
        self.study: optuna.Study | None = None
        self._lock = threading.Lock()  # the live thread renders while hooks update
        self._live: Any = None

    # 1. Hooks called by the engines.
    def phase(self, text: str) -> None:
        """What happens before the first epoch (opening the store, loading data, compiling)."""
        with self._lock:
            self.phase_text, self.phase_since = text, self.clock()
        self._start_live()

    def start(self, study: optuna.Study, target: int) -> None:
        """Read the study once: counts, what its trials trained and how fast, the best trial,
        and what its pruner lets each trial of the run expect to train."""
        trials = study.get_trials(deepcopy=False)
        finished = sorted((t for t in trials if t.state in record.FINISHED),
                          key=lambda t: t.number)
        budget = record.study_of(study).get(record.Study.EPOCHS)
        budget = int(budget) if isinstance(budget, (int, float)) else None
        defaults = sum(1 for t in trials if record.of(t).default)
        prior = pace.pruner_prior(getattr(study, "pruner", None), budget or 1,
                                  max(target, len(finished)), study.study_name, defaults)
        standing = self.leader(study) if self.leader is not None else None
        with self._lock:
            self.study = study
            self.goal = Goal.of_study(study)
            self.contest = isinstance(
                (record.study_of(study).get(record.Study.IDENTITY) or {}).get("contest"), dict)
            self.standing = standing
            self.name, self.target, self.budget = study.study_name, target, budget
            self.prior = prior
            self.stored_pace = pace.measure(finished)
            for t in finished:
                self._count(t)
        self._start_live()

    def plan(self, work_of: Callable[[Sequence[FrozenTrial]], pace.Work]) -> None:
        """The run is made of stages (a contest): `work_of(trials)` says what it still trains
        (search.pace.Work), read from the study's trials as each trial starts and finishes."""
        self.work_of = work_of
        self._read_work()

    def _read_work(self, study: optuna.Study | None = None) -> None:
        study = study or self.study
        if self.work_of is None or study is None:
            return
        work = self.work_of(study.get_trials(deepcopy=False))
        with self._lock:
            self.work = work

    def parallel(self, trials: int) -> None:
        """`trials` train side by side (worker processes), for the ETA."""
        with self._lock:
            self.side_by_side = max(1, trials)

    def trial_started(self, trial: optuna.Trial | FrozenTrial, ago: float = 0.0,
                      worker: str | None = None) -> None:
        """A trial begins (its family is read from its params once suggested); `ago`: seconds
        since it began, where it is seen late (read from the store)."""
        with self._lock:
            began = self.clock() - ago
            what = self._what(trial)
            self.running[trial.number] = _Running(trial, began, 0, None, what, began, worker,
                                                  bool(self.epoch_times), self._length(trial))
        self._read_work()

    def epoch(self, number: int, epoch: int, val_acc: float | None) -> None:
        """Trial `number` has trained `epoch` epochs (1..N, as the pruner's steps count)."""
        now = self.clock()
        with self._lock:
            old = self.running.get(number) or _Running(None, now, 0, None, None, now)
            what = self._what(old.trial) or old.what  # a sampled trial's family is known now
            seconds = (now - old.last) / max(1, epoch - old.epoch)
            if old.epoch:  # its last epoch was seen here
                self.epoch_seconds.append(seconds)
            elif old.timed:  # its start was: the first trial also paid the run's own start-up
                # trained alone, one at a time: since the previous trial's last epoch
                alone = len(self.running) == 1 and self.side_by_side == 1
                since = self.epoch_times[-1] if alone else old.last
                self.first_seconds.append((now - since) / max(1, epoch))
            self.running[number] = old._replace(epoch=epoch, val_acc=val_acc, what=what,
                                                last=now,
                                                epochs=self._length(old.trial) or old.epochs)
            self.epoch_times.append(now)

    def track(self, trials: Sequence[FrozenTrial], now: datetime | None = None) -> None:
        """The running trials as read from the store (`--jobs`: the workers train them): each
        one's start, worker, and each epoch it has reported since the last look."""
        now = now or datetime.now()
        for t in trials:
            if t.state != TrialState.RUNNING:
                continue
            if t.number not in self.running:
                ago = (now - t.datetime_start).total_seconds() if t.datetime_start else 0.0
                worker = (record.worker_of(t) or "?").removeprefix(HOST)
                self.trial_started(t, max(0.0, ago), worker)
            else:  # the newest read: what it runs is recorded once it has started
                with self._lock:
                    self.running[t.number] = self.running[t.number]._replace(trial=t)
            reached = record.epochs_trained(t)
            if reached > self.running[t.number].epoch:
                values = t.intermediate_values
                self.epoch(t.number, reached, values[max(values)] if values else None)

    def trial_finished(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._read_work(study)
        standing = self.leader(study) if self.leader is not None else None
        with self._lock:
            self.running.pop(trial.number, None)
            self._count(trial)
            if standing is not None:
                self.standing = standing
            value = "-" if trial.value is None else f"{trial.value:.4f}"
            r = record.of(trial)
            reason = r.end_reason or trial.state.name.lower()
            reached = record.epochs_trained(trial)
            at = (f" after epoch {self._of(reached, self._length(trial))}"
                  if trial.state == TrialState.PRUNED else "")
            if trial.state == TrialState.PRUNED and trial.value is None and reached:
                curve = r.metric_curve(self.goal.metric) or [None]
                value = f"{curve[-1]:.4f}" if isinstance(curve[-1], float) else "-"
            what = what_ran(trial, self.contest, self.budget)
            self.last = f"trial {trial.number} {what}: {self.goal.metric} {value} ({reason}{at})"
            line = (f"[{self._finished()}/{self.target}] {self.last}; {self._best()}; "
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
        if t.state not in record.FINISHED:
            return
        self.done[t.state.name.lower()] += 1
        self.reached.append(record.epochs_trained(t))
        if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value):
            if self.best is None or self.goal.score(t.value) > self.goal.score(self.best[0]):
                self.best = (float(t.value), record.family_of(t), t.number)

    def _finished(self) -> int:
        return self.done["complete"] + self.done["pruned"]

    def _of(self, n: int, epochs: int | None = None) -> str:
        """Epoch `n` of the run's length (`epochs`; else the study's)."""
        length = epochs or self.budget
        return f"{n}/{length}" if length else str(n)

    def _length(self, trial: optuna.Trial | FrozenTrial | None) -> int | None:
        """The epochs a trial trains: its record's (a contest's shorter horizons), else the
        study's."""
        try:
            return record.of(trial).epochs if trial is not None else None
        except RuntimeError:  # its user attrs changed while copied (another thread)
            return None

    def _what(self, trial: optuna.Trial | FrozenTrial | None) -> str | None:
        """A running trial's `what_ran` (its LR shows once it has finished); None before its
        family is known (a sampled trial before its suggestion) or while another thread
        changes the trial's dicts."""
        if trial is None:
            return None
        try:
            what = what_ran(trial, self.contest, self.budget, lr=False)
        except RuntimeError:  # the params dict changed size while copied (another thread)
            return None
        return None if what.split(" at ", 1)[0].endswith(record.UNKNOWN) else what

    def _best(self) -> str:
        """What leads: a contest's standing at the study's length (`leader`), never a shorter
        run; a plain search's best trial."""
        if self.standing is not None:
            return self.standing
        if self.best is None:
            return "best -"
        value, family, number = self.best
        return f"best {value:.4f} {family} (trial {number})"

    def measured_pace(self) -> pace.Pace | None:
        """Seconds an epoch and a trial's start take, as measured so far (search.pace)."""
        if self.epoch_seconds:
            per_epoch = sum(self.epoch_seconds) / len(self.epoch_seconds)
            start = (sum(self.first_seconds) / len(self.first_seconds) - per_epoch
                     if self.first_seconds else 0.0)
            return pace.Pace(per_epoch, max(0.0, start))
        if self.first_seconds:  # one epoch timed: start-up and epoch not told apart yet
            return pace.Pace(sum(self.first_seconds) / len(self.first_seconds))
        return self.stored_pace

    def eta(self) -> float | None:
        """Seconds still to go (search.pace): the plan's runs where the run has one (`plan`),
        else the pruner's expectation for each trial still to finish; None until timed."""
        if self.work is not None:
            done = {number: r.epoch for number, r in self.running.items()}
            left, to_start = self.work.epochs_left(done), self.work.runs
        else:
            left, to_start = pace.epochs_left(
                self.prior or [float(self.budget or 1)],
                self.reached, [r.epoch for _, r in sorted(self.running.items())], self.target)
        side_by_side = max(self.side_by_side, len(self.running), 1)
        return pace.eta_seconds(left, to_start, self.measured_pace(), side_by_side)

    def _eta_text(self) -> str:
        if self._finished() >= self.target or (
                self.work is not None and not self.work.runs and not self.running):
            return "done"
        eta = self.eta()
        return "ETA once 2 epochs are timed" if eta is None else f"ETA {duration(eta)}"

    def _eta_work(self) -> str:
        """What the ETA counts, where the run has a plan: the runs still to start by kind, e.g.
        " (49 runs to start: 18 grid runs (4-8 epochs), 12 shapes (~3.8 epochs), 19 race runs
        (8 epochs))"."""
        if self.work is None or not self.work.runs or self._finished() >= self.target:
            return ""
        kinds: dict[str, list[pace.Stage]] = {}
        for s in self.work.stages:
            if s.runs:
                kinds.setdefault(s.name, []).append(s)
        parts = []
        for name, stages in kinds.items():
            runs = sum(s.runs for s in stages)
            lengths = [_epochs(s.epochs) for s in stages]
            span = lengths[0] if len(set(lengths)) == 1 else f"{lengths[0]}-{lengths[-1]}"
            parts.append(f"{runs} {name}{'' if runs == 1 else 's'} ({span} epoch"
                         f"{'' if span == '1' else 's'})")
        return f" ({self.work.runs} runs to start: {', '.join(parts)})"

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
                    f"[bold]{self._eta_text()}[/]{self._eta_work()}")
            out = [head]
            if not self.epoch_times and not self.running and self._finished() < self.target:
                out.append(f"  {self.phase_text} ... {duration(now - self.phase_since)}")
            for number, r in sorted(self.running.items()):
                if r.epoch:
                    acc = f"  val acc {r.val_acc:.4f}" if r.val_acc is not None else ""
                    doing = f"epoch {self._of(r.epoch, r.epochs)} done{acc}"
                else:
                    doing = "starting (loading data, building the model)"
                who = "running" if r.worker is None else f"worker {r.worker}"
                what = (r.what or self._what(r.trial)  # not yet sampled: a contest's shape
                        or ("shape" if self.contest else record.UNKNOWN))
                out.append(f"  {who} trial {number} {what}: {doing}  "
                           f"{duration(now - r.started)}")
            out.append(f"  {self._best()}")
            if self.last:
                out.append(f"  last {self.last}")
            return out


class _Panel:
    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def __rich__(self) -> Any:
        from rich.text import Text

        return Text.from_markup("\n".join(self.progress.lines()))



def _epochs(e: float) -> str:
    """A stage's epochs a run: whole, or the pruner's expectation (~3.8)."""
    return f"{e:g}" if e == int(e) else f"~{e:.1f}"

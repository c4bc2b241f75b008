"""The claim protocol every trial loop follows (sequential, fused arrays, `validate`).

1. join: create or load the study under the claim lock (no two workers enqueue the defaults)
   and take the next sampler seed index of the study, so every worker process ever started
   draws its own stream (an array's refills all draw from its process's stream);
2. claim, under a lock shared by all workers of the study on any machine: fail trials whose
   worker died (no heartbeat for the grace period; RetryStale queues them again with the same
   parameters and the user attrs they were enqueued with), then ask the loop's policy whether
   a trial is due (`Count`: the exact global target of finished trials); if so, take the
   queued trial the policy wants (`take_queued`; the ones ahead of it end as `not_due`), or
   queue the run it names next, and `study.ask()`;
3. set the trial up (`runner.setup`) and train it with a `Heartbeat`; `Signals` turn
   SIGTERM/Ctrl-C into end_reason `interrupted`;
4. `conclude`: tell the result, unless another worker already failed it as stale (then its
   retry runs); a lost connection is retried, a store that refuses writes is one line;
5. `FailureStreak` stops the loop after MAX_FAILURES_IN_A_ROW failed trials.

`enter` is every loop's entry (the sequential loop, fused arrays, `validate`): the store
opened, the signals installed, and the loops' endings (`guarded`). A trial ends with a state
and a reason (search.record.End) here only: `conclude` (what training said), `end` (the
stale sweep, a queued run no longer due) and `storage.close_failed` (a store that refuses
writes), which `conclude` and the arrays call.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from search import compat, record, runner, storage
from search.contest.policy import ContestPolicy
from search.engine.signals import Signals
from search.errors import UserError
from search.progress import interruption

if TYPE_CHECKING:
    from search.config import StudyConfig

__all__ = ["DONE", "MAX_FAILURES_IN_A_ROW", "WAIT", "WORKER_ID",
           "ClaimPolicy", "Claimer", "Count", "FailureStreak", "Heartbeat", "RetryStale", "beats",
           "conclude", "count", "end", "enter", "finished_and_running", "guarded", "join", "lost",
           "open_for", "policy_for", "refused", "take_queued"]

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"
# A policy's verdicts. Defined in search.runner, below both the engine and search.contest,
# whose ContestPolicy returns them too (the contest cannot import the engine).
DONE, WAIT = runner.DONE, runner.WAIT
log = logging.getLogger("search.engine")


@runtime_checkable
class ClaimPolicy(Protocol):
    """What a loop asks, under the claim lock, before it claims a trial (`Claimer.claim`).

    Implemented structurally (no base class): `Count` here, the contest's `ContestPolicy`
    (search.contest.policy) and validate's `_Runs` (search.validation.validate).
    """

    def __call__(self, study: optuna.Study, live: bool) -> str | None:
        """None where a trial is due, else DONE or WAIT. `live`: the store records
        heartbeats (a RUNNING trial is a live worker's)."""

    @property
    def wanted(self) -> Callable[[FrozenTrial], bool] | None:
        """Whether a queued trial is one the policy wants next (`take_queued` ends the ones
        ahead of it); None: any queued trial is taken, as `ask` takes the oldest."""

    def next_run(self) -> record.Enqueued | None:
        """The run to queue where no queued trial is wanted (None: `ask` samples one)."""


class RetryStale(RetryHeartbeatStaleTrialCallback):
    """Optuna's retry of a dead worker's trial, with the same parameters: the retry keeps
    exactly the user attrs the trial was claimed with and drops what its training wrote
    (curves, the schedule record, `end_reason`, ...).

    A trial without the record starts clean: it was claimed by an older schedsearch, or its
    worker died between `ask()` and the record (written under the lock, before any beat).
    """

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        super().__call__(study, record.with_attrs(copy.deepcopy(trial), record.claimed_of(trial)))


def open_for(workers: Any, url: str, retry_stale: bool = True) -> optuna.storages.BaseStorage:
    """The storage a worker uses: heartbeats from `workers` ([workers] of the study file), dead
    workers' trials retried (`retry_stale`), every call riding out an outage."""
    with warnings.catch_warnings():  # heartbeats and retries are "experimental" in optuna
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        callback = RetryStale(max_retry=workers.max_retry) if retry_stale else None
        return storage.resilient(storage.open_storage(
            url, heartbeat_interval=workers.heartbeat_interval,
            grace_period=workers.grace_period, stale_trial_callback=callback))


def beats(store: BaseStorage) -> bool:
    """Whether the store records heartbeats (else a RUNNING trial may be a dead one)."""
    get = getattr(store, "get_heartbeat_interval", None)
    return bool(get and get())


def _direct(store: BaseStorage) -> AbstractContextManager[None]:
    return store.direct() if isinstance(store, storage.Resilient) else nullcontext()


def join(cfg: StudyConfig, store: BaseStorage, worker: int | None = None
         ) -> tuple[optuna.Study, int]:
    """The study, its sampler on this worker's own seed stream, and that stream's index.

    `worker` None takes the study's next free index (every process ever started gets one).
    """
    def create() -> tuple[optuna.Study, int]:
        with _direct(store), storage.claim_lock(store, cfg.name):
            study = runner.create_or_load(cfg, store)
            if worker is not None:
                return study, worker
            return study, record.next_worker_index(store, compat.study_id(study))

    study, index = storage.retry(create, url=getattr(store, "url", None))
    study.sampler = runner.make_sampler(cfg, index)
    return study, index


MAX_FAILURES_IN_A_ROW = 5  # then the study stops: something is wrong beyond one schedule


def count(study: optuna.Study, states: tuple[TrialState, ...] = record.FINISHED) -> int:
    """Trials in these states, counted by the database (no trial is loaded)."""
    store = compat.storage_of(study)
    return sum(storage.retried(store, lambda: compat.count_trials(
        store, compat.study_id(study), states)).values())


def finished_and_running(study: optuna.Study) -> tuple[int, int]:
    """Both counts from one query that loads no trial (a trial finishing between two reads
    would be in neither)."""
    store = compat.storage_of(study)
    counts = storage.retried(store, lambda: compat.count_trials(
        store, compat.study_id(study), (*record.FINISHED, TrialState.RUNNING)))
    running = counts.get(TrialState.RUNNING, 0)
    return sum(counts.values()) - running, running


class Count:
    """Claim until the study holds `target` finished trials, counting every worker's (a
    `ClaimPolicy`, structurally).

    With heartbeats, running trials count too (a dead worker's fails after the grace period
    and is retried); without, only `own()` running trials do.
    """

    def __init__(self, target: int, own: Callable[[], int] = lambda: 0) -> None:
        self.target, self.own = target, own

    def __call__(self, study: optuna.Study, live: bool) -> str | None:
        done, running = finished_and_running(study)
        if done >= self.target:
            return DONE
        if done + max(running if live else 0, self.own()) >= self.target:
            return WAIT
        return None

    # Any queued trial (a default, a retry) is taken first, as `ask` takes the oldest one;
    # with none queued, `ask` samples a trial: nothing to look at or queue here.
    wanted = None

    def next_run(self) -> None:
        """Never asked (`wanted` is None): `ask` samples the trial."""
        return None


def policy_for(cfg: StudyConfig, target: int, own: Callable[[], int] = lambda: 0) -> ClaimPolicy:
    """The claim policy of a study's loop, `target` finished trials in all: its contest's
    (search.contest.policy) where the study has one, else `Count` (`own`: this worker's
    running trials, counted where the store keeps no heartbeats)."""
    if cfg.contest is not None:
        return ContestPolicy(cfg, target)
    return Count(target, own)


def take_queued(study: optuna.Study, wanted: Callable[[FrozenTrial], bool]
                ) -> FrozenTrial | None:
    """End every queued (WAITING) trial ahead of the first one `wanted` accepts as FAIL,
    end_reason `not_due` (an older plan's leftovers), so that `study.ask()` takes that one (it
    takes the oldest queued trial); returns it, or None where none is wanted."""
    store = compat.storage_of(study)
    for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        if wanted(t):
            return t
        end(store, compat.trial_id(t), record.End.NOT_DUE)
    return None


def end(store: BaseStorage, trial_id: int, reason: str, running_only: bool = False) -> bool:
    """End a trial that is not training here as FAIL with `reason` (record.End); with
    `running_only`, only where it is still RUNNING, the reason in the same transaction (the
    stale sweep: a live owner that finished it meanwhile keeps its state and reason). Returns
    whether this call ended it."""
    if running_only:
        return compat.fail_running(store, trial_id, record.end_attrs(reason))
    record.store_end(store, trial_id, reason)
    return bool(store.set_trial_state_values(trial_id, TrialState.FAIL))


class Claimer:
    """Claims trials of one study for this worker (see the module docstring)."""

    def __init__(self, study: optuna.Study, grace_s: float, signals: Any = None) -> None:
        self.study, self.grace_s, self.signals = study, grace_s, signals
        self.orphans: dict[int, float] = {}  # RUNNING without any heartbeat: first seen at

    def claim(self, policy: ClaimPolicy, engine: str | None = None) -> optuna.Trial | str:
        """A trial to train (RUNNING, heartbeat recorded), or DONE or WAIT from `policy`.

        `policy(study, live)`: None where a trial is due, else DONE or WAIT;
        `policy.wanted(trial)`: whether a queued trial is one it wants next (`wanted` None:
        any); `policy.next_run()`: the run to queue where none is wanted (None: `ask`
        samples one)."""
        store = compat.storage_of(self.study)
        abort = getattr(store, "abort", None)
        return storage.retry(lambda: self._claim(policy, engine),
                             url=getattr(store, "url", None), abort=abort)

    def _claim(self, policy: ClaimPolicy, engine: str | None) -> optuna.Trial | str:
        study, store = self.study, compat.storage_of(self.study)
        live = beats(store)
        with _direct(store), storage.claim_lock(store, study.study_name):
            if live:
                self.sweep()
            verdict = policy(study, live)
            if verdict is not None:
                return verdict
            if policy.wanted is not None and take_queued(study, policy.wanted) is None:
                run = policy.next_run()
                if run is not None:
                    record.enqueue(study, run)
            with warnings.catch_warnings():  # ask/tell with heartbeats is what we do here
                warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
                trial = study.ask()
            try:  # the CLAIMED record before the first beat: a trial that beat has it
                record.store_claim(store, compat.trial_id(trial), record.of(trial).attrs,
                                   WORKER_ID, engine)
                if live:
                    # live: the store keeps heartbeats (optuna's BaseHeartbeat; `beats`)
                    store.record_heartbeat(compat.trial_id(trial))  # type: ignore[attr-defined]
            except Exception as e:  # a full disk: the trial just created must not stay RUNNING
                if storage.is_write_fault(e):
                    storage.close_failed(store, compat.trial_id(trial), record.End.STORAGE_ERROR)
                raise
        return trial

    def sweep(self) -> None:
        """Fail trials whose worker died, and queue their retries (same parameters)."""
        study, store = self.study, compat.storage_of(self.study)
        sid = compat.study_id(study)
        stale = set(compat.stale_trial_ids(store, sid))
        rdb = compat.rdb_of(store)
        current = compat.trials_without_heartbeat(rdb, sid) if rdb is not None else set()
        now = time.monotonic()
        for tid in list(self.orphans):
            if tid not in current:
                del self.orphans[tid]
        for tid in current:  # died before its first heartbeat
            if now - self.orphans.setdefault(tid, now) > 2 * self.grace_s:
                stale.add(tid)
        # swept only where the store keeps heartbeats (optuna's BaseHeartbeat; `beats`)
        callback = store.get_heartbeat_stale_trial_callback()  # type: ignore[attr-defined]
        for tid in sorted(stale):
            # The state change decides, with the reason in the same transaction: a live owner
            # that finished the trial meanwhile keeps its state and reason, and only the
            # sweeper that failed the trial (not another one, nor the owner) queues its retry.
            if not end(store, tid, record.End.WORKER_LOST, running_only=True):
                continue
            if callback is not None:
                callback(study, copy.deepcopy(store.get_trial(tid)))


class Heartbeat:
    """Records the trial's heartbeat every interval. A failed beat is tried again at the next
    one, and logged once per kind of failure: beats that stop for the grace period let another
    worker fail and retry the trial, and the log says why."""

    def __init__(self, store: BaseStorage, trial_id: int) -> None:
        self.store, self.trial_id, self.stop_event = store, trial_id, threading.Event()
        # `beats`: the store keeps heartbeats (optuna's BaseHeartbeat)
        interval = store.get_heartbeat_interval() if beats(store) else None  # type: ignore[attr-defined]
        if interval:
            threading.Thread(target=self._beat, args=(interval,), daemon=True,
                             name=f"heartbeat-{trial_id}").start()

    def _beat(self, interval: float) -> None:
        seen: set[str] = set()
        while not self.stop_event.wait(interval):
            try:
                # a beat runs only where the store keeps heartbeats (__init__)
                self.store.record_heartbeat(self.trial_id)  # type: ignore[attr-defined]
            except Exception as e:
                if type(e).__name__ not in seen:
                    seen.add(type(e).__name__)
                    self._failed(e)

    def _failed(self, e: Exception) -> None:
        url = getattr(self.store, "url", None)
        text = str(e).strip().splitlines()[0] if str(e).strip() else ""
        log.warning("heartbeat of trial id %d failed%s (%s: %s); tried again every beat; after "
                    "grace_period without one, another worker retries the trial", self.trial_id,
                    f" on storage {storage.redact(url)}" if url else "", type(e).__name__,
                    storage.scrub(text, url))

    def stop(self) -> None:
        self.stop_event.set()  # no join: a beat stuck on the database must not hold the tell


def conclude(study: optuna.Study, trial_id: int, state: TrialState, value: float | None,
             error: BaseException | None = None) -> FrozenTrial | None:
    """End a claimed trial in the store: the finished trial, or None where another worker
    failed it first (its retry runs). `error`: what ended it (KeyboardInterrupt: interrupted).

    Raises what must stop the loop: a store that refuses writes, during the training or now
    (one line; the trial closed as FAIL, end_reason storage_error, where the store lets it),
    or `error` where it is neither a lost connection nor a runner.TrialFailed.
    """
    store = compat.storage_of(study)
    if error is not None and storage.is_write_fault(error):  # a full disk, a read-only file
        raise _closing_refused(store, trial_id, error) from error
    try:
        return _tell(study, store, trial_id, state, value, error)
    except Exception as e:
        if isinstance(e, UserError) or not storage.is_write_fault(e):
            raise
        raise _closing_refused(store, trial_id, e) from e


def _closing_refused(store: BaseStorage, trial_id: int, error: BaseException) -> UserError:
    """The line for a store that refused a write of this trial, once the trial is closed as
    FAIL with end_reason storage_error (best effort: around the cache, without retries)."""
    closed = storage.close_failed(store, trial_id, record.End.STORAGE_ERROR)
    return refused(error, getattr(store, "url", None), closed)


def _tell(study: optuna.Study, store: BaseStorage, trial_id: int, state: TrialState,
          value: float | None, error: BaseException | None) -> FrozenTrial | None:
    if isinstance(error, KeyboardInterrupt) or (error and storage.is_transient(error)):
        reason = (record.End.INTERRUPTED if isinstance(error, KeyboardInterrupt)
                  else record.End.STORAGE_ERROR)
        try:
            record.store_end(store, trial_id, reason)
        except UpdateFinishedTrialError:
            pass
    frozen = None
    if not isinstance(error, UpdateFinishedTrialError):  # failed by another worker meanwhile
        number = store.get_trial(trial_id).number
        try:
            frozen = study.tell(number, value if state == TrialState.COMPLETE else None,
                                state=state, skip_if_finished=True)
        except UpdateFinishedTrialError:
            frozen = store.get_trial(trial_id)
        frozen = frozen if frozen.state == state else None
    if frozen is None:
        log.warning("trial %d was failed by another worker (no heartbeat for the grace "
                    "period); its retry runs instead", store.get_trial(trial_id).number)
        return None
    if error is not None and storage.is_transient(error):
        # a lost connection: a database's store, which keeps heartbeats (optuna's BaseHeartbeat)
        callback = store.get_heartbeat_stale_trial_callback()  # type: ignore[attr-defined]
        if callback is not None:  # a lost connection is no verdict on the schedule
            callback(study, copy.deepcopy(frozen))
    elif error is not None and not isinstance(error, runner.TrialFailed):
        raise error  # KeyboardInterrupt included: the loop ends (see Signals)
    return frozen


class FailureStreak:
    """Stops the loop after MAX_FAILURES_IN_A_ROW failed trials: beyond one schedule."""

    def __init__(self) -> None:
        self.failures = 0

    def count(self, trial: FrozenTrial) -> None:
        self.failures = self.failures + 1 if trial.state == TrialState.FAIL else 0
        if self.failures >= MAX_FAILURES_IN_A_ROW:
            raise UserError(
                f"{self.failures} trials in a row failed (see `end_reason` on the trials); "
                "try a smaller --batch-size or width, or another --device")


def refused(e: BaseException, url: str | None, closed: bool | None) -> UserError:
    """The one line for a store that refuses writes, saying what became of the trial."""
    trial = {True: "the trial in flight ended as FAIL (end_reason = storage_error); ",
             False: "the trial in flight could not be closed (another worker fails it after "
                    "the grace period); ", None: ""}[closed]
    return UserError(f"storage {storage.redact(url or '')} refuses writes "
                     f"({storage.scrub(storage.write_fault(e) or '', url)}); {trial}"
                     "free disk space or make the store writable, then run again")


def lost(e: BaseException, url: str | None) -> UserError:
    """The one line for a store that stayed away past the patience of every retry."""
    return UserError(f"lost the storage {storage.redact(url or '')}: "
                     f"{storage.scrub(str(e).splitlines()[0], url)}; a running trial is "
                     "retried by the other workers after the grace period")


@dataclasses.dataclass
class Entry:
    """A trial loop's hold on its store: the store, the signals, the study once opened."""

    store: BaseStorage
    sig: Signals
    study: optuna.Study | None = None


def enter(store: BaseStorage | str, workers: Any,
          opener: Callable[[BaseStorage], optuna.Study],
          body: Callable[[Entry], None]) -> Entry:
    """Every trial loop's entry: the store opened (a URL: with heartbeats from `workers`, the
    study file's [workers]; a storage: made resilient), the signals installed, the study
    opened (`opener(store)`: `join` for a search) and `body(entry)` run, all with the loops'
    endings (`guarded`). A signal while the study opens is only noted: it is open."""
    store = (open_for(workers, store) if isinstance(store, str)
             else storage.resilient(store))
    entry = Entry(store, Signals(store).install())

    def run() -> None:
        entry.study = opener(store)
        body(entry)

    guarded(store, entry.sig, run)
    return entry


def guarded(store: BaseStorage, sig: Signals, body: Callable[[], Any]) -> Any:
    """`body()` with the loops' endings: SIGTERM returns (None), Ctrl-C raises
    KeyboardInterrupt, a store that refuses writes or stays away is one UserError line."""
    url = getattr(store, "url", None)
    try:
        return body()
    except KeyboardInterrupt:
        if sig.received is None:  # not a signal of ours: as it came
            raise
    except UserError:
        raise
    except Exception as e:
        if storage.is_write_fault(e):
            raise refused(e, url, None) from None
        if not storage.is_transient(e):
            raise
        raise lost(e, url) from None
    finally:
        sig.restore()
    if sig.terminated:
        log.warning("stopped by SIGTERM: %s; running again goes on from the finished trials",
                    interruption(sig.interrupted))
    sig.reraise()
    return None

"""Worker processes on one study: an exact global trial target, dead workers' trials retried.

`work` is the trial loop of one process (the sequential `run` and every worker use it):

1. claim, under a lock shared by all workers of the study on any machine: fail trials whose
   worker died (no heartbeat for `grace_period`; Optuna's RetryHeartbeatStaleTrialCallback
   queues them again with the same parameters), then count finished + running trials; below
   the target, take a queued trial or create one;
2. run it with a heartbeat thread; SIGTERM/SIGINT end it as FAIL with end_reason=interrupted;
3. tell the result, unless another worker already failed it as stale (then its retry runs).

Database calls go through storage.Resilient, so an outage stalls a worker instead of killing
it. `run_many` starts N such workers as processes (spread over the GPUs) and shows progress.
"""

from __future__ import annotations

import copy
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from search import runner, storage
from search.config import StudyConfig, load_objective
from search.errors import UserError
from search.progress import notify

__all__ = ["RetryStale", "gpu_plan", "open_for", "run_many", "visible_gpus", "work"]

ROOT = Path(__file__).resolve().parents[2]
POLL_S = 1.0  # how often a worker with nothing to claim looks again
WAIT_NOTICE_S = 10.0  # a wait longer than this is explained once
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"
DONE, WAIT = "done", "wait"
log = logging.getLogger(__name__)


class RetryStale(RetryHeartbeatStaleTrialCallback):
    """Optuna's retry of a dead worker's trial; the retry starts without the old curves."""

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        trial = copy.deepcopy(trial)
        trial.user_attrs = {}
        super().__call__(study, trial)


def open_for(cfg: StudyConfig, url: str) -> optuna.storages.BaseStorage:
    """The storage a worker of this study uses: heartbeats and retries from its [workers]."""
    w = cfg.workers
    with warnings.catch_warnings():  # heartbeats and retries are "experimental" in optuna
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return storage.resilient(storage.open_storage(
            url, heartbeat_interval=w.heartbeat_interval, grace_period=w.grace_period,
            stale_trial_callback=RetryStale(max_retry=w.max_retry)))


class _Signals:
    """SIGTERM/SIGINT interrupt a running objective at once, anything else at the next step."""

    def __init__(self, store: Any) -> None:
        self.received: int | None = None
        self._inside, self._old, self._store = False, {}, store

    def install(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

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

    def sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while self.received is None and time.monotonic() < end:
            time.sleep(min(0.1, seconds))


class _Heartbeat:
    """Records the trial's heartbeat every interval; a failed beat is simply tried again."""

    def __init__(self, store: Any, trial_id: int) -> None:
        self.store, self.trial_id, self.stop_event = store, trial_id, threading.Event()
        interval = store.get_heartbeat_interval() if hasattr(store, "get_heartbeat_interval") \
            else None
        if interval:
            threading.Thread(target=self._beat, args=(interval,), daemon=True,
                             name=f"heartbeat-{trial_id}").start()

    def _beat(self, interval: float) -> None:
        while not self.stop_event.wait(interval):
            try:
                self.store.record_heartbeat(self.trial_id)
            except Exception:
                pass  # logged by the storage; a long gap lets another worker retry the trial

    def stop(self) -> None:
        self.stop_event.set()  # no join: a beat stuck on the database must not hold the tell


def _heartbeats(store: Any) -> bool:
    return optuna.storages._heartbeat.is_heartbeat_enabled(store)


def _direct(store: Any):
    return store.direct() if isinstance(store, storage.Resilient) else nullcontext()


def _join(cfg: StudyConfig, store: Any, allocate: bool) -> tuple[optuna.Study, int]:
    """Create or load the study under the claim lock (no two workers enqueue the defaults)."""
    with _direct(store), storage.claim_lock(store, cfg.name):
        study = runner.create_or_load(cfg, store)
        index = 0
        if allocate:  # every worker ever started gets its own sampler seed
            attrs = store.get_study_system_attrs(study._study_id)
            index = int(attrs.get("workers_started", 0))
            store.set_study_system_attr(study._study_id, "workers_started", index + 1)
    return study, index


def _sweep(study: optuna.Study, orphans: dict[int, float]) -> None:
    """Fail trials whose worker died, and queue their retries (same parameters)."""
    store, sid = study._storage, study._study_id
    stale = set(store._get_stale_trial_ids(sid))
    now = time.monotonic()
    grace = store._backend.grace_period or 2 * store.get_heartbeat_interval()
    current = storage.orphan_trial_ids(store, sid)  # died before its first heartbeat
    for tid in list(orphans):
        if tid not in current:
            del orphans[tid]
    for tid in current:
        if now - orphans.setdefault(tid, now) > 2 * grace:
            stale.add(tid)
    callback = store.get_heartbeat_stale_trial_callback()
    for tid in sorted(stale):
        try:
            store.set_trial_user_attr(tid, "end_reason", "worker_lost")
            if not store.set_trial_state_values(tid, TrialState.FAIL):
                continue
        except UpdateFinishedTrialError:
            continue  # another worker failed it first
        if callback is not None:
            callback(study, copy.deepcopy(store.get_trial(tid)))


def _claim(study: optuna.Study, target: int, orphans: dict[int, float]) -> int | str:
    """A trial id to run, or DONE (target reached) or WAIT (only others' trials are left)."""
    store = study._storage
    beats = _heartbeats(store)
    with _direct(store), storage.claim_lock(store, study.study_name):
        if beats:
            _sweep(study, orphans)
        done, running = runner.finished_and_running(study)
        if done >= target:
            return DONE
        # Without heartbeats a RUNNING trial may be a dead one: count only finished trials.
        if beats and done + running >= target:
            return WAIT
        study._thread_local.cached_all_trials = None
        trial_id = study._pop_waiting_trial_id()
        if trial_id is None:
            trial_id = store.create_new_trial(study._study_id)
        try:
            if beats:
                store.record_heartbeat(trial_id)
            store.set_trial_system_attr(trial_id, "worker", WORKER_ID)
        except Exception as e:  # a full disk: the trial just created must not stay RUNNING
            if storage.is_write_fault(e):
                storage.close_failed(store, trial_id, "storage_error")
            raise
    return trial_id


def _tell(study: optuna.Study, trial_id: int, state: TrialState, value: float | None):
    """The finished trial, or None where another worker failed it first (its retry runs)."""
    store = study._storage
    number = store.get_trial(trial_id).number
    try:
        frozen = study.tell(number, value if state == TrialState.COMPLETE else None,
                            state=state, skip_if_finished=True)
    except UpdateFinishedTrialError:
        frozen = store.get_trial(trial_id)
    return frozen if frozen.state == state else None


def _run_trial(study: optuna.Study, trial_id: int, objective: Callable, sig: _Signals):
    store = study._storage
    beat = _Heartbeat(store, trial_id)
    state, value, error = TrialState.FAIL, None, None
    try:
        with sig.interruptible():
            value = objective(optuna.Trial(study, trial_id))
        state = TrialState.COMPLETE
    except optuna.TrialPruned:
        state = TrialState.PRUNED
    except (Exception, KeyboardInterrupt) as e:
        error = e
    finally:
        beat.stop()
    if error is not None and storage.is_write_fault(error):  # a full disk, a read-only file
        closed = storage.close_failed(store, trial_id, "storage_error")
        raise _refused(error, getattr(store, "url", None), closed)
    if isinstance(error, KeyboardInterrupt) or (error and storage.is_transient(error)):
        reason = "interrupted" if isinstance(error, KeyboardInterrupt) else "storage_error"
        try:
            store.set_trial_user_attr(trial_id, "end_reason", reason)
        except UpdateFinishedTrialError:
            pass
    # Failed as stale by another worker while we ran it: nothing of ours to tell.
    superseded = isinstance(error, UpdateFinishedTrialError)
    frozen = None if superseded else _tell(study, trial_id, state, value)
    if frozen is None:
        error = None
        log.warning("trial %d was failed by another worker (no heartbeat for the grace "
                    "period); its retry runs instead", store.get_trial(trial_id).number)
    elif error is not None and storage.is_transient(error):
        callback = store.get_heartbeat_stale_trial_callback()
        if callback is not None:  # a lost connection is no verdict on the schedule
            callback(study, copy.deepcopy(frozen))
        error = None
    if error is not None and not isinstance(error, runner.TrialFailed):
        raise error
    return frozen


def work(
    cfg: StudyConfig,
    store: optuna.storages.BaseStorage | str,
    target: int,
    progress: Any = None,
    worker: int | None = None,
) -> optuna.Study:
    """Run trials until the study holds `target` finished trials, counting every worker's."""
    store = open_for(cfg, store) if isinstance(store, str) else storage.resilient(store)
    url = getattr(store, "url", None)
    sig = _Signals(store).install()
    try:
        notify(progress, "phase", "opening the study")
        study, index = storage.retry(lambda: _join(cfg, store, worker is None), url=url)
        study.sampler = runner.make_sampler(cfg, index if worker is None else worker)
        objective = runner.make_objective(cfg, progress.epoch if progress else None)
        if progress is not None:
            progress.start(study, target)
            objective = _announced(objective, progress)
        failures, orphans, waited = 0, {}, 0.0
        while sig.received is None:
            claimed = storage.retry(lambda: _claim(study, target, orphans), url=url,
                                    abort=getattr(store, "abort", None))
            if claimed == DONE:
                break
            if claimed == WAIT:
                waited += POLL_S
                if waited >= WAIT_NOTICE_S > waited - POLL_S:
                    log.warning("waiting for trials running in other workers; a dead worker's "
                                "trial is retried after grace_period = %d s",
                                cfg.workers.grace_period)
                sig.sleep(POLL_S)
                continue
            waited = 0.0
            frozen = _run_trial(study, claimed, objective, sig)
            if frozen is None:
                continue
            if progress is not None:
                progress.trial_finished(study, frozen)
            failures = failures + 1 if frozen.state == TrialState.FAIL else 0
            if failures >= runner.MAX_FAILURES_IN_A_ROW:
                raise UserError(
                    f"{failures} trials in a row failed (see `end_reason` on the trials); "
                    "try a smaller --batch-size or width, or another --device")
    except KeyboardInterrupt:
        if sig.received != signal.SIGTERM:
            raise
    except Exception as e:
        if storage.is_write_fault(e):
            raise _refused(e, url, None) from None
        if not storage.is_transient(e):
            raise
        raise UserError(f"lost the storage {storage.redact(url or '')}: "
                        f"{storage.scrub(str(e).splitlines()[0], url)}; a running trial is "
                        "retried by the other workers after the grace period") from None
    finally:
        sig.restore()
    if sig.received == signal.SIGTERM:
        log.warning("stopped by SIGTERM; the running trial was closed in the store")
    elif sig.received is not None:
        raise KeyboardInterrupt
    return study


def _refused(e: BaseException, url: str | None, closed: bool | None) -> UserError:
    trial = {True: "the trial in flight ended as FAIL (end_reason = storage_error); ",
             False: "the trial in flight could not be closed (another worker fails it after "
                    "the grace period); ", None: ""}[closed]
    return UserError(f"storage {storage.redact(url or '')} refuses writes "
                     f"({storage.scrub(storage.write_fault(e) or '', url)}); {trial}"
                     "free disk space or make the store writable, then run again")


# ---------------------------------------------------------------------------------------
# Many worker processes on this machine (`run --jobs N`)


def visible_gpus(device: str) -> list[str]:
    """The CUDA device ids workers may be spread over (none unless device is auto/cuda)."""
    if device not in ("auto", "cuda"):
        return []
    import torch

    if not torch.cuda.is_available():
        return []
    ids = [str(i) for i in range(torch.cuda.device_count())]
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env:  # already narrowed by the user: keep to those
        ids = [s.strip() for s in env.split(",") if s.strip()][: len(ids)]
    return ids


def gpu_plan(jobs: int, per_gpu: int, gpus: list[str]) -> list[str | None]:
    """CUDA_VISIBLE_DEVICES for each worker: round robin, at most `per_gpu` on one GPU."""
    if not gpus:
        return [None] * jobs
    if jobs > len(gpus) * per_gpu:
        raise UserError(
            f"`--jobs` must be at most {len(gpus)} GPUs x --workers-per-gpu {per_gpu} = "
            f"{len(gpus) * per_gpu} but got {jobs}; raise --workers-per-gpu to share a GPU")
    return [gpus[i % len(gpus)] for i in range(jobs)]


def _spawn(job: dict[str, Any], gpu: str | None, jobs: int) -> subprocess.Popen:
    # The URL travels over stdin, never on a command line (`ps` shows command lines).
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.getcwd(),
                                                    env.get("PYTHONPATH")) if p)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // jobs)))
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    proc = subprocess.Popen([sys.executable, "-m", "search.engine.workers"],
                            stdin=subprocess.PIPE, env=env)
    proc.stdin.write(pickle.dumps(job))
    proc.stdin.close()
    return proc


def _announced(objective: Any, progress: Any) -> Any:
    """The objective, telling the progress display when each trial starts."""

    def run(trial: optuna.Trial) -> float:
        notify(progress, "trial_started", trial)
        return objective(trial)

    return run


def _show_new(study: optuna.Study, seen: set[int], progress: Any) -> None:
    try:
        trials = study.get_trials(deepcopy=False, states=runner.FINISHED + (TrialState.FAIL,))
    except Exception as e:
        if storage.is_transient(e):
            return  # the workers wait for the database; the display just skips a beat
        raise
    for t in sorted(trials, key=lambda t: t.number):
        if t.number not in seen:
            seen.add(t.number)
            if progress is not None:
                progress.trial_finished(study, t)


def run_many(
    cfg: StudyConfig, url: str, target: int, jobs: int, per_gpu: int = 1, progress: Any = None,
    array: int | None = None,
) -> tuple[optuna.Study, int]:
    """Start `jobs` worker processes on the study and wait for them: (study, exit code).

    `array`: each worker trains fused arrays of that many trials (None: as `run` picks it,
    from the worker's own GPU's free memory; sequential on a CPU).
    """
    gpus = gpu_plan(jobs, per_gpu, visible_gpus(getattr(cfg.train, "device", "auto")))
    load_objective(cfg.objective)  # bad input fails once here, not once per worker
    store = open_for(cfg, url)
    study, _ = storage.retry(lambda: _join(cfg, store, allocate=False), url=url)
    seen = {t.number for t in study.get_trials(
        deepcopy=False, states=runner.FINISHED + (TrialState.FAIL,))}
    sig = _Signals(store).install()
    procs: list[subprocess.Popen] = []
    try:
        for i in range(jobs):
            job = {"cfg": cfg, "url": url, "target": target, "index": i, "parent": os.getpid(),
                   "array": array}
            procs.append(_spawn(job, gpus[i], jobs))
        if progress is not None:
            progress.start(study, target)
        forwarded, reported = None, set()
        while [p.poll() for p in procs].count(None):  # poll each: exit codes are read
            if sig.received is not None and forwarded != sig.received:
                forwarded = sig.received
                for p in procs:
                    if p.poll() is None:
                        p.send_signal(sig.received)
            _show_new(study, seen, progress)
            for i, p in enumerate(procs):
                if p.returncode not in (None, 0, 130) and i not in reported:
                    reported.add(i)
                    log.warning("worker %d exited with %s; the others go on (its trial is "
                                "retried after the grace period)", i, _describe(p.returncode))
            time.sleep(0.5)
    finally:
        for p in procs:  # the parent is leaving (an error): so do its workers
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait()
        sig.restore()
    _show_new(study, seen, progress)
    if sig.received == signal.SIGINT:
        raise KeyboardInterrupt
    codes = [p.returncode for p in procs]
    if sig.received == signal.SIGTERM or storage.retry(lambda: runner.count(study)) >= target:
        return study, 0
    return study, max((c if c > 0 else 1) for c in codes if c != 0) if any(codes) else 0


def _describe(code: int) -> str:
    return f"signal {-code}" if code < 0 else f"code {code}"


def _die_with_parent(parent: int) -> None:
    """A worker gets SIGTERM when its parent dies (Linux), ending its trial cleanly."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before we got here
        os.kill(os.getpid(), signal.SIGTERM)


def child_main() -> int:
    """Entry of one worker process started by run_many (its job arrives on stdin)."""
    job = pickle.load(sys.stdin.buffer)
    logging.basicConfig(level=logging.WARNING, format=f"worker {job['index']}: %(message)s")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    try:
        from search.engine import array

        store = open_for(job["cfg"], job["url"])
        _die_with_parent(job["parent"])
        # K is picked here, after CUDA_VISIBLE_DEVICES gave this worker its GPU
        k = array.array_size(job["cfg"], job.get("array"))
        if k is None:
            work(job["cfg"], store, job["target"])
        else:
            array.run(job["cfg"], store, job["target"], k=k)
    except UserError as e:
        print(f"worker {job['index']}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    from search.engine.workers import child_main as _main  # the module, not this __main__ copy

    raise SystemExit(_main())

"""Run a study as fused trial arrays: Optuna ask/tell around `engine.fused.ArrayTrainer`.

K trials train at once as one model on one device; as soon as one ends (complete, pruned,
diverged) it is told to the study and its slot gets a newly asked trial, until the study
holds its target of finished trials. Each trial carries the user attributes a sequential
trial carries (`runner.Recorder` records them), and ends the same way: pruned with
end_reason `pruned` or `non_finite_loss`, failed with `oom` or `interrupted`.

K: `--array K`, else on a GPU as many members as fit in 80% of its free memory (at most
MAX_K); CPU runs keep the sequential engine unless `--array` asks for an array. One worker
process per GPU, each running an array, composes: every array asks and tells the shared
study, and `runner.count` of the study is the global target check.
"""

from __future__ import annotations

import dataclasses
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import optuna
from optuna.storages._heartbeat import get_heartbeat_thread, is_heartbeat_enabled
from optuna.trial import TrialState

from objectives import Diverged
from search import runner, space, storage
from search.config import DEFAULT_OBJECTIVE, StudyConfig
from search.engine.fused import ArrayTrainer, Job, member_bytes
from search.engine.workers import WORKER_ID
from search.errors import UserError
from search.progress import notify

__all__ = ["MAX_K", "array_size", "k_from_memory", "pick_k", "run"]

MAX_K = 32  # beyond this a small net's array is compute-bound; the benchmark tries 4..32
MEMORY_HEADROOM = 0.8  # of the free GPU memory; the rest is left for allocator slack
POLL_S = 1.0  # how often an idle array looks again while other workers' trials run


def k_from_memory(free_bytes: int, per_member: int, cap: int = MAX_K,
                  headroom: float = MEMORY_HEADROOM) -> int:
    """Members that fit in `headroom` of `free_bytes`, between 1 and `cap`."""
    return max(1, min(cap, int(free_bytes * headroom) // max(1, per_member)))


def pick_k(cfg: StudyConfig) -> int:
    """K for a GPU from its free memory and one probe step; 1 on a CPU."""
    import torch

    from objectives.classify import resolve_device

    device = resolve_device(cfg.train.device)
    if device.type != "cuda":
        return 1
    per = member_bytes(cfg.train, device)
    free, _ = torch.cuda.mem_get_info(device)
    return k_from_memory(free, per)


def _check(cfg: StudyConfig) -> None:
    if cfg.objective != DEFAULT_OBJECTIVE:
        raise UserError(
            f"`--array` needs the built-in objective {DEFAULT_OBJECTIVE} but the study uses "
            f"{cfg.objective}; run it without --array"
        )
    if getattr(cfg.train, "optimizer", "sgd") != "sgd":  # FusedSGD is the arrays' optimizer
        raise UserError(f"`--array` trains SGD only but the study's optimizer is "
                        f"{cfg.train.optimizer!r}; run it without --array")


def array_size(cfg: StudyConfig, requested: int | None = None) -> int | None:
    """K for this run, or None for the sequential engine (a CPU, or a user objective)."""
    if requested is not None:
        _check(cfg)
        return requested
    if cfg.objective != DEFAULT_OBJECTIVE or getattr(cfg.train, "optimizer", "sgd") != "sgd":
        return None
    from objectives.classify import resolve_device

    if resolve_device(cfg.train.device).type != "cuda":
        return None
    return pick_k(cfg)


@dataclasses.dataclass
class _Live:
    trial: optuna.Trial
    recorder: runner.Recorder
    heartbeat: Any


class _Array:
    """The study side of one array: asks trials for empty slots and tells them as they end."""

    def __init__(self, cfg: StudyConfig, study: optuna.Study, n_trials: int, progress: Any):
        self.cfg, self.study, self.n_trials, self.progress = cfg, study, n_trials, progress
        self.live: dict[int, _Live] = {}

    def next_job(self) -> Job | None:
        """A new trial for an empty slot, or None while the target is covered.

        Counted under the study's claim lock, as every worker counts: finished trials plus
        running ones (every worker's where heartbeats tell live from dead, else this
        array's), so arrays in many processes stop at the global target together.
        """
        study = self.study
        beats = is_heartbeat_enabled(study._storage)
        with storage.claim_lock(study._storage, study.study_name), warnings.catch_warnings():
            # optuna warns that heartbeats belong to study.optimize: here they are kept below
            warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            if beats:  # as study.optimize does before each trial
                optuna.storages.fail_stale_trials(study)
            done, running = runner.finished_and_running(study)
            if done + max(running if beats else 0, len(self.live)) >= self.n_trials:
                return None
            trial = study.ask()
            for key, value in (("worker", WORKER_ID), ("engine", "array")):  # who trains it
                study._storage.set_trial_system_attr(trial._trial_id, key, value)
        rec = runner.Recorder(trial, self.progress.epoch if self.progress else None,
                              defer_prune=True)
        schedule = space.suggest(trial, self.cfg.space, self.cfg.epochs)
        runner.record_optimizer(trial, schedule)
        notify(self.progress, "trial_started", trial)
        heartbeat = get_heartbeat_thread(trial._trial_id, study._storage)
        heartbeat.start()
        self.live[trial.number] = _Live(trial, rec, heartbeat)
        return Job(dataclasses.replace(schedule, listener=rec.built), rec, trial,
                   decide=rec.prune_check, order=trial.number)

    def finish(self, job: Job, outcome: float | BaseException) -> None:
        live = self.live[job.tag.number]
        if isinstance(outcome, float):
            self._tell(live, TrialState.COMPLETE, outcome)
        elif isinstance(outcome, Diverged):
            live.recorder.end("non_finite_loss")
            self._tell(live, TrialState.PRUNED)
        elif isinstance(outcome, optuna.TrialPruned):
            self._tell(live, TrialState.PRUNED)  # the recorder set end_reason "pruned"
        else:  # the trial's report failed: as in a sequential run, the trial fails and so
            self._tell(live, TrialState.FAIL)  # does the run
            raise outcome

    def fail_all(self, reason: str | None) -> None:
        """Close every running trial as failed (the array is stopping)."""
        for live in list(self.live.values()):
            if reason:
                live.recorder.end(reason)
            self._tell(live, TrialState.FAIL)

    def _tell(self, live: _Live, state: TrialState, value: float | None = None) -> None:
        live.heartbeat.join()
        del self.live[live.trial.number]
        frozen = self.study.tell(live.trial, value, state=state)
        if self.progress is not None:
            self.progress.trial_finished(self.study, frozen)


def run(
    cfg: StudyConfig,
    store: optuna.storages.BaseStorage | str,
    n_trials: int,
    progress: Any = None,
    worker: int | None = None,
    k: int | None = None,
    compile: bool = False,
) -> optuna.Study:
    """Run fused arrays of `k` trials until the study holds `n_trials` finished trials.

    The array counterpart of `runner.run` (same arguments, same result). `k` None picks it
    from free GPU memory (1 on a CPU). Out of memory fails the running trials (end_reason
    `oom`) and retries with half the members; at K=1 it is a UserError.
    """
    if n_trials < 1:
        raise UserError(f"`--trials` must be >= 1 but got {n_trials}")
    if k is not None and k < 1:
        raise UserError(f"`--array` must be >= 1 but got {k}")
    _check(cfg)
    notify(progress, "phase", "loading data")
    runner.prepare(cfg)
    study = runner.create_or_load(cfg, store, worker or 0)
    k = k or pick_k(cfg)
    if progress is not None:
        progress.start(study, n_trials)
    array = _Array(cfg, study, n_trials, progress)
    with _sigterm_interrupts():
        _loop(cfg, study, n_trials, array, k, compile)
    return study


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (a worker's parent leaving, a scheduler) closes the trials as Ctrl-C does."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _loop(cfg: StudyConfig, study: optuna.Study, n_trials: int, array: _Array, k: int,
          compile: bool) -> None:
    trainer = None
    while runner.count(study) < n_trials:
        try:
            trainer = trainer or ArrayTrainer(cfg.train, k, compile=compile)
            trainer.run(array.next_job, array.finish)
        except KeyboardInterrupt:
            array.fail_all("interrupted")
            raise
        except RuntimeError as e:
            if not runner.is_oom(e):
                array.fail_all("interrupted")
                raise
            array.fail_all("oom")
            if k == 1:
                raise UserError(
                    "out of memory with one trial per array; try a smaller --batch-size or "
                    "width, or another --device"
                ) from None
            trainer, k = None, k // 2
            _empty_cache()
            continue
        except BaseException:
            array.fail_all("interrupted")
            raise
        if runner.count(study) < n_trials:  # other workers' running trials cover the target
            time.sleep(POLL_S)


def _empty_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()

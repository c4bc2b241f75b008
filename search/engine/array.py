"""Run a study as fused trial arrays: the claim protocol around `objectives.fused_train`.

K trials train at once as one model on one device; as soon as one ends (complete, pruned,
diverged) it is told to the study and its slot gets a newly claimed trial, until the study
holds its target of finished trials. Claiming, seeding, heartbeats, signals and the failure
streak are the sequential loop's (`engine.claim`); only training K at once differs. Each trial
carries the user attributes a sequential trial carries (`runner.Recorder` records them), and
ends the same way: pruned with end_reason `pruned` or `non_finite_loss`, failed with `oom`,
`interrupted` or `storage_error` (a store that refuses writes closes every trial in flight).

K: `--array K`, else on a GPU as many members as fit in 80% of this worker's share of the
free memory (workers sharing a GPU split it), at most MAX_K; CPU runs keep the sequential
engine unless `--array` asks for an array.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import optuna
from optuna.trial import TrialState

from objectives import Diverged
from objectives.fused_train import ArrayTrainer, Job, member_bytes
from objectives.optimizers import OPTIMIZERS
from search import compat, record, runner, schedules, storage
from search.config import DEFAULT_OBJECTIVE, StudyConfig
from search.engine import claim
from search.engine.sequential import POLL_S
from search.engine.signals import Signals
from search.errors import UserError
from search.goal import Goal
from search.progress import Display, notify

__all__ = ["MAX_K", "array_size", "k_from_memory", "pick_k", "run"]

MAX_K = 32  # beyond this a small net's array is compute-bound; the benchmark tries 4..32
MEMORY_HEADROOM = 0.8  # of the free GPU memory; the rest is left for allocator slack


def k_from_memory(free_bytes: int, per_member: int, cap: int = MAX_K,
                  headroom: float = MEMORY_HEADROOM, share: int = 1) -> int:
    """Members that fit in `headroom` of `free_bytes / share`, between 1 and `cap`.

    `share`: workers on this GPU. Each takes its share of what is free when it starts, so the
    workers together never ask for more than was free (a later one sees less and takes less).
    """
    budget = int(free_bytes * headroom) // max(1, share)
    return max(1, min(cap, budget // max(1, per_member)))


def pick_k(cfg: StudyConfig, share: int = 1) -> int:
    """K for a GPU from its free memory, this worker's share of it, and one probe step; 1 on
    a CPU."""
    import torch

    from objectives.classify import resolve_device

    device = resolve_device(cfg.train.device)
    if device.type != "cuda":
        return 1
    per = member_bytes(cfg.train, device)
    free, _ = torch.cuda.mem_get_info(device)
    return k_from_memory(free, per, share=share)


def _check(cfg: StudyConfig) -> None:
    if cfg.objective != DEFAULT_OBJECTIVE:
        raise UserError(
            f"`--array` needs the built-in objective {DEFAULT_OBJECTIVE} but the study uses "
            f"{cfg.objective}; run it without --array"
        )
    if cfg.goal != Goal():  # the fused trainer returns each member's validation accuracy
        raise UserError(f"`--array` maximises val_acc only but the study asks to "
                        f"{cfg.goal.direction} {cfg.goal.metric!r}; run it without --array")
    if not OPTIMIZERS[cfg.train.optimizer].fused:  # FusedSGD is the arrays' optimizer
        fused = " or ".join(o.label for o in OPTIMIZERS.values() if o.fused)
        raise UserError(f"`--array` trains {fused} only but the study's optimizer is "
                        f"{cfg.train.optimizer!r}; run it without --array")


def array_size(cfg: StudyConfig, requested: int | None = None, share: int = 1) -> int | None:
    """K for this run, or None for the sequential engine (a CPU, a user objective, a contest)."""
    if cfg.contest is not None:  # fixed runs on their own seeds and optimizers: one at a time
        if requested is not None:
            raise UserError("`--array` does not run a [contest] study (its race trains each "
                            "contender on its own seed, which a fused array cannot); run it "
                            "without --array, with --jobs N to use more devices")
        return None
    if requested is not None:
        _check(cfg)
        return requested
    # The built-in objective's settings are a TrainConfig (config.load); a user objective's
    # may be anything, and is never asked for an optimizer here.
    if cfg.objective != DEFAULT_OBJECTIVE or not OPTIMIZERS[cfg.train.optimizer].fused:
        return None
    from objectives.classify import resolve_device

    if resolve_device(cfg.train.device).type != "cuda":
        return None
    return pick_k(cfg, share)


@dataclasses.dataclass
class _Live:
    trial: optuna.Trial
    recorder: runner.Recorder
    heartbeat: claim.Heartbeat


class _Array:
    """The study side of one array: claims trials for empty slots and concludes them."""

    def __init__(self, cfg: StudyConfig, study: optuna.Study, n_trials: int,
                 progress: Display | None,
                 sig: Signals | None = None):
        self.cfg, self.study, self.progress = cfg, study, progress
        self.sig = sig or Signals()
        self.live: dict[int, _Live] = {}
        self.policy = claim.policy_for(cfg, n_trials, own=lambda: len(self.live))
        self.claimer = claim.Claimer(study, cfg.workers.grace_period, self.sig)
        self.streak = claim.FailureStreak()

    def next_job(self) -> Job | None:
        """A new trial for an empty slot, or None while the target is covered."""
        if self.sig.received is not None:
            return None
        with self.sig.shielded():
            trial = self.claimer.claim(self.policy, "array")
            if isinstance(trial, str):
                return None
            rec = runner.Recorder(trial, self.progress.epoch if self.progress else None,
                                  defer_prune=True)
            beat = claim.Heartbeat(compat.storage_of(self.study), compat.trial_id(trial))
            self.live[trial.number] = _Live(trial, rec, beat)  # from here on, stop() closes it
            _, schedule = runner.setup(self.cfg, rec)
            notify(self.progress, "trial_started", trial)
        schedule = dataclasses.replace(schedule, listener=rec.built)

        def build(optimizer: Any, steps: int, epochs: int) -> schedules.Built:
            return schedules.build(optimizer, schedule, steps, epochs)

        return Job(schedule, build, rec, trial, decide=rec.prune_check, order=trial.number)

    def finish(self, job: Job, outcome: float | BaseException) -> None:
        live = self.live[job.tag.number]
        with self.sig.shielded():
            if isinstance(outcome, float):
                self._end(live, TrialState.COMPLETE, outcome)
            elif isinstance(outcome, Diverged):
                live.recorder.end(record.End.NON_FINITE)
                self._end(live, TrialState.PRUNED)
            elif isinstance(outcome, optuna.TrialPruned):
                self._end(live, TrialState.PRUNED)  # the recorder set end_reason "pruned"
            else:  # the trial's report failed: as in a sequential run, the trial fails and
                self._end(live, TrialState.FAIL, error=outcome)  # so does the run

    def fail_all(self, reason: str) -> None:
        """Close every running trial as failed with `reason` (the array is stopping)."""
        for live in list(self.live.values()):
            live.recorder.end(reason)
            self._end(live, TrialState.FAIL, counted=False)

    def stop(self, error: BaseException) -> BaseException:
        """The array stops on `error`: every running trial ends as FAIL, with end_reason
        `storage_error` where the store refuses writes (closed as `conclude` closes a
        sequential trial), else `interrupted`. Returns what to raise: `error`, or the one line
        for a store that refuses writes."""
        if not storage.is_write_fault(error):
            self.fail_all(record.End.INTERRUPTED)
            return error
        store = compat.storage_of(self.study)
        closed = [storage.close_failed(store, compat.trial_id(live.trial),
                                       record.End.STORAGE_ERROR)
                  for live in self.live.values()]
        for live in self.live.values():
            live.heartbeat.stop()
        self.live.clear()
        if isinstance(error, UserError):  # conclude's line: it closed its trial already
            return error
        return claim.refused(error, getattr(store, "url", None), all(closed) if closed else None)

    def _end(self, live: _Live, state: TrialState, value: float | None = None,
             error: BaseException | None = None, counted: bool = True) -> None:
        del self.live[live.trial.number]
        try:  # beating until the result is stored (as sequential.run_trial)
            frozen = claim.conclude(self.study, compat.trial_id(live.trial), state, value, error)
        finally:
            live.heartbeat.stop()
        if frozen is not None and self.progress is not None:
            self.progress.trial_finished(self.study, frozen)
        if frozen is not None and counted:
            self.streak.count(frozen)


def run(
    cfg: StudyConfig,
    store: optuna.storages.BaseStorage | str,
    n_trials: int,
    progress: Display | None = None,
    worker: int | None = None,
    k: int | None = None,
    compile: bool = False,
) -> optuna.Study:
    """Run fused arrays of `k` trials until the study holds `n_trials` finished trials.

    The array counterpart of `sequential.run` (same arguments, same result). `k` None picks
    it from free GPU memory (1 on a CPU). Out of memory fails the running trials (end_reason
    `oom`) and retries with half the members; at K=1 it is a UserError. SIGTERM ends the
    running trials as `interrupted` and returns; Ctrl-C does the same and raises
    KeyboardInterrupt.
    """
    if n_trials < 1:
        raise UserError(f"`--trials` must be >= 1 but got {n_trials}")
    if k is not None and k < 1:
        raise UserError(f"`--array` must be >= 1 but got {k}")
    _check(cfg)
    notify(progress, "phase", "loading data")

    def body(e: claim.Entry) -> None:
        study = e.study
        assert study is not None  # enter() opened it before the body
        if progress is not None:
            progress.start(study, n_trials)
        _loop(cfg, _Array(cfg, study, n_trials, progress, e.sig), k or pick_k(cfg), compile)

    study = claim.enter(store, cfg.workers, lambda s: claim.join(cfg, s, worker)[0], body).study
    assert study is not None  # enter() opens it before anything can end the run
    return study


def _loop(cfg: StudyConfig, array: _Array, k: int, compile: bool) -> None:
    trainer, sig = None, array.sig
    while sig.received is None:
        try:
            trainer = trainer or ArrayTrainer(cfg.train, k, compile=compile)
            with sig.interruptible():
                trainer.run(array.next_job, array.finish)
        except BaseException as e:
            if not (isinstance(e, RuntimeError) and runner.is_oom(e)):
                stopped = array.stop(e)  # Ctrl-C, SIGTERM, a store that refuses writes, a bug
                if stopped is e:
                    raise
                raise stopped from e
            array.fail_all(record.End.OOM)
            if k == 1:
                raise UserError(
                    "out of memory with one trial per array; try a smaller --batch-size or "
                    "width, or another --device"
                ) from None
            trainer, k = None, k // 2
            _empty_cache()
            continue
        if array.policy(array.study, False) == claim.DONE:
            return
        sig.sleep(POLL_S)  # other workers' running trials cover the target for now


def _empty_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()

"""The sequential trial loop: one trial at a time through the claim protocol (`claim`).

`run` is a study run in this process (the CLI's `run` without --jobs, every --jobs worker
whose trials are not fused); `loop` is the bare loop, also `validate`'s.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search import compat, runner
from search.contest import work as contest_work
from search.engine import claim
from search.engine.signals import Signals
from search.errors import UserError
from search.progress import Display, notify

if TYPE_CHECKING:
    from search.config import StudyConfig

__all__ = ["POLL_S", "loop", "run", "run_trial", "work"]

POLL_S = 1.0  # how often a worker with nothing to claim looks again
WAIT_NOTICE_S = 10.0  # a wait longer than this is explained once
log = logging.getLogger("search.engine")


def run_trial(study: optuna.Study, trial: optuna.Trial, objective: Callable[[optuna.Trial], float],
              sig: Signals) -> FrozenTrial | None:
    """Train one claimed trial with its heartbeat, and conclude it in the store.

    The heartbeat stops once the result is stored: storing it may wait out a database that is
    away for longer than the grace period, and a trial without beats is failed and retried.
    """
    beat = claim.Heartbeat(compat.storage_of(study), compat.trial_id(trial))
    try:
        state, value, error = TrialState.FAIL, None, None
        try:
            with sig.interruptible():
                value = objective(trial)
            state = TrialState.COMPLETE
        except optuna.TrialPruned:
            state = TrialState.PRUNED
        except (Exception, KeyboardInterrupt) as e:
            error = e
            if isinstance(e, KeyboardInterrupt):
                sig.interrupted.append(trial.number)  # for the messages (guarded, the CLI)
        return claim.conclude(study, compat.trial_id(trial), state, value, error)
    finally:
        beat.stop()


def loop(study: optuna.Study, objective: Callable[[optuna.Trial], float],
         policy: claim.ClaimPolicy,
         sig: Signals, grace_s: float,
         on_finished: Callable[[optuna.Study, FrozenTrial], None] | None = None) -> None:
    """Claim and train trials until `policy` says DONE or a signal arrives."""
    claimer, streak, waited = claim.Claimer(study, grace_s, sig), claim.FailureStreak(), 0.0
    while sig.received is None:
        claimed = claimer.claim(policy)
        if claimed == claim.DONE:
            return
        if claimed == claim.WAIT:
            waited += POLL_S
            if waited >= WAIT_NOTICE_S > waited - POLL_S:
                log.warning("waiting for trials running in other workers; a dead worker's "
                            "trial is retried after grace_period = %d s", grace_s)
            sig.sleep(POLL_S)
            continue
        waited = 0.0
        assert not isinstance(claimed, str)  # DONE and WAIT returned or continued above
        frozen = run_trial(study, claimed, objective, sig)
        if frozen is None:
            continue
        if on_finished is not None:
            on_finished(study, frozen)
        streak.count(frozen)


def work(
    cfg: StudyConfig,
    store: optuna.storages.BaseStorage | str,
    target: int,
    progress: Display | None = None,
    worker: int | None = None,
) -> optuna.Study:
    """Run trials until the study holds `target` finished trials, counting every worker's."""

    def body(e: claim.Entry) -> None:
        study = e.study
        assert study is not None  # enter() opened it before the body
        objective = runner.make_objective(cfg, progress.epoch if progress else None)
        if progress is not None:
            progress.start(study, target)
            if cfg.contest is not None:  # the ETA counts the contest's remaining stages
                notify(progress, "plan", contest_work.tracker(cfg, target, study))
            objective = _announced(objective, progress)
        policy = claim.policy_for(cfg, target)
        fresh = not any(claim.finished_and_running(study))
        try:
            loop(study, objective, policy, e.sig, cfg.workers.grace_period,
                 progress.trial_finished if progress is not None else None)
        except UserError:
            # bad input met in its first trial: the study this run made holds no result
            if fresh and not any(claim.finished_and_running(study)):
                optuna.delete_study(study_name=study.study_name,
                                    storage=compat.storage_of(study))
            raise

    notify(progress, "phase", "opening the study")
    study = claim.enter(store, cfg.workers, lambda s: claim.join(cfg, s, worker)[0], body).study
    assert study is not None  # enter() opens it before anything can end the run
    return study


def run(
    cfg: StudyConfig,
    store: optuna.storages.BaseStorage | str,
    n_trials: int,
    progress: Display | None = None,
    worker: int | None = None,
) -> optuna.Study:
    """Run trials until the study holds `n_trials` finished (complete + pruned) trials.

    The target counts every worker's trials, on any machine; `worker` picks the sampler's
    seed stream (default: the study's next free one). The caller has run `runner.prepare`
    (the CLI, before a store is opened: it may cost the objective a data load or a
    framework's validation pass, once).
    """
    if n_trials < 1:
        raise UserError(f"`--trials` must be >= 1 but got {n_trials}")
    return work(cfg, store, n_trials, progress, worker)


def _announced(objective: Any, progress: Display | None) -> Any:
    """The objective, telling the progress display when each trial starts."""

    def announce(trial: optuna.Trial) -> float:
        notify(progress, "trial_started", trial)
        return objective(trial)

    return announce

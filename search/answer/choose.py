"""Choosing the trial to show, and its schedule at the asked budget: the Recommendation.

Reads only the storage: any finished study can be exported from any machine that
reaches the database. The recommendation is the contest's leader on the validation split (a
plain search: its best trial, by the study's metric and direction, search.goal); where
`validate` has run, what it found on the test split is shown beside it (`Validation`, read by
search.validation.companion) and chooses nothing. The recommendation itself and its code:
search.answer.recommendation; its text and JSON: search.answer.text and .fields.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from objectives.optimizers import by_class
from search import compat, record, schedules, storage
from search.answer.recommendation import Recommendation
from search.answer.text import pending, stage_text
from search.contest.law import Transfer, moved
from search.contest.law import transfer as lr_transfer
from search.contest.standing import Standing, standing
from search.contest.state import Settings
from search.errors import UserError
from search.goal import DEFAULT, Goal
from search.progress import what_ran
from search.validation.companion import validation

__all__ = ["NotYet", "best_trial", "from_trial", "recommend", "recommended_trial", "trial_of"]


class NotYet(UserError):
    """A contest that has not yet finished a run at the study's length: it has no
    recommendation and `best` no code (a shorter horizon's run is never the answer). The
    message is one line; `text.pending_text` says the same for people, with what exists so
    far."""

    def __init__(self, st: Standing) -> None:
        self.standing = st
        short = st.leading_short()
        again = (f" (`{storage.hint_command(f'best --study {st.study} --trial {short[0].number}')}"
                 "` exports a finished trial as it is)") if short is not None else ""
        super().__init__(f"{pending(st)}; `best` prints code once one has finished{again}")


def best_trial(study: optuna.Study) -> FrozenTrial:
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not trials:
        raise UserError(
            f"study {study.study_name!r} has no complete trial yet; run "
            f"`{storage.hint_command(f'run --study {study.study_name}')}` first (a pruned trial "
            "exports with `--trial N`)"
        )
    goal = Goal.of_study(study)
    return max(trials, key=lambda t: (goal.score(record.value_of(t)), -t.number))


def from_trial(
    study_name: str, trial: FrozenTrial, epochs: int | None = None,
    steps_per_epoch: int | None = None, move: Transfer | None = None, goal: Goal = DEFAULT,
) -> Recommendation:
    """A trial's schedule for `epochs` x `steps_per_epoch` (default: as searched), at the LR
    `move` gives (the LR law's at that length, search.contest.law.transfer).

    The one rescaling path: the recorded budget-free schedule resolved for the budget
    (`schedules.resolve`), exactly as training builds it.
    """
    r = record.of(trial)
    s = schedules.recorded(trial)
    if r.epochs is None or r.steps_per_epoch is None or r.optimizer is None:
        raise UserError(f"trial {trial.number} carries no complete training record (its "
                        "budget or optimizer is missing); pick another trial")
    if move is not None:
        s = moved(s, move)
    e0, s0 = int(r.epochs), int(r.steps_per_epoch)
    e1, s1 = epochs or e0, steps_per_epoch or s0
    if e1 < 1 or s1 < 1:
        raise UserError(f"`--epochs` and `--steps-per-epoch` must be >= 1 but got {e1}, {s1}")
    built = schedules.resolve(s, e1, s1)
    value = float(trial.value) if trial.value is not None else None
    if value is None and trial.intermediate_values:
        value = float(trial.intermediate_values[max(trial.intermediate_values)])
    return Recommendation(
        study=study_name, trial_number=trial.number, value=value, state=trial.state.name,
        epochs_trained=record.epochs_trained(trial),
        family=s.family, kwargs=built.kwargs, interval=built.interval, warmup=built.warmup,
        optimizer=_for_budget({**r.optimizer, "lr": s.lr} if move is not None and move.moved
                              else dict(r.optimizer), e1 * s1),
        epochs=e1, steps_per_epoch=s1, searched_epochs=e0, searched_steps_per_epoch=s0,
        goal=goal,
    )


def _for_budget(optimizer: dict[str, Any], total_steps: int) -> dict[str, Any]:
    """The recorded optimizer (exactly what torch received, beside `schedule` in every trial
    loop) for a budget: a schedule-free optimizer's warmup is a share of the run's steps."""
    kind = by_class(str(optimizer.get("name")))
    if "warmup_steps" not in optimizer or kind is None or not kind.schedule_free:
        return optimizer
    return {**optimizer, "warmup_steps": kind.warmup_steps(total_steps)}


def trial_of(study: optuna.Study, number: int) -> FrozenTrial:
    """Finished trial `number` of `study` (complete or pruned), for `best --trial N`."""
    trial = _trial_by_number(study, number)
    if trial is None:
        raise UserError(f"study {study.study_name!r} has no trial {number}; "
                        f"`{storage.hint_command(f'report --study {study.study_name}')}` lists "
                        "them")
    if trial.state not in (TrialState.COMPLETE, TrialState.PRUNED):
        raise UserError(f"trial {number} of {study.study_name!r} is "
                        f"{trial.state.name.lower()}, not finished; pick a complete or pruned "
                        "trial")
    return trial


def recommend(
    study: optuna.Study, epochs: int | None = None, steps_per_epoch: int | None = None,
    trial_number: int | None = None, keep_lr: bool = False,
) -> Recommendation:
    """The recommended schedule (`recommended_trial`), for `epochs` x `steps_per_epoch`, with
    the contest's standing and what `validate` found on the test split; or trial
    `trial_number`. Validation never changes which schedule is recommended.

    In a contest, the LR at `epochs` is the LR law's (search.contest.law: measured across the
    study's horizons; unchanged where it was not, or with `keep_lr`)."""
    goal = Goal.of_study(study)
    if trial_number is not None:  # as asked, whatever its part: named as the live line does
        trial = trial_of(study, trial_number)
        contest = Settings.of(record.study_of(study)) is not None
        rec = from_trial(study.study_name, trial, epochs, steps_per_epoch, goal=goal)
        return replace(rec, label=(record.of(trial).label or "") if contest else "",
                       asked=what_ran(trial, contest))
    trial, st = recommended_trial(study)
    if st is not None and st.leader is not None:
        move = st.transfer(st.leader, epochs, keep_lr)
        rec = from_trial(study.study_name, trial, epochs, steps_per_epoch, move, goal)
        rec = replace(rec, standing=st, label=st.leader.label, transfer=move,
                      unfinished="" if st.decided else stage_text(st.stage))
        val = validation(study, epochs, recommended=trial.number,
                         keys=st.keys_at(epochs, keep_lr))
    else:
        rec = from_trial(study.study_name, trial, epochs, steps_per_epoch, goal=goal)
        rec = replace(rec, transfer=lr_transfer({}, "", "", rec.lr, rec.searched_epochs,
                                                epochs))  # says: not measured across lengths
        val = validation(study, epochs, recommended=trial.number)
    return replace(rec, validation=val) if val is not None else rec


def recommended_trial(study: optuna.Study) -> tuple[FrozenTrial, Standing | None]:
    """The one answer to "which schedule does this study recommend", read by every reader:
    the contest's leader (the best shared-seed mean on the validation split, among runs of the
    study's length) where the study runs a contest, else its best complete trial. Never chosen
    on the test split; never a shorter horizon's run: a contest with no run of the study's
    length finished raises NotYet."""
    st = standing(study)
    if st is not None and st.leader is None:
        raise NotYet(st)
    if st is not None and st.leader is not None:
        trial = _trial_by_number(study, st.leader.source_trial)
        if trial is not None:
            return trial, st
    return best_trial(study), st


def _trial_by_number(study: optuna.Study, number: int) -> FrozenTrial | None:
    store = compat.storage_of(study)
    try:
        return store.get_trial(store.get_trial_id_from_study_id_trial_number(
            compat.study_id(study), number))
    except KeyError:
        return None

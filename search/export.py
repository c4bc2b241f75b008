"""The best trial -> paste-ready PyTorch code, text or JSON; rescaling to another budget.

Reads only the storage: any finished study can be exported from any machine that
reaches the database. The recommendation is the contest's leader on the validation split (a
plain search: its best trial, by the study's metric and direction, search.goal); where
`validate` has run, what it found on the test split is shown beside it (`Validation`, read by
search.companion) and chooses nothing. The recommendation itself and its code:
search.recommendation.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from objectives.optimizers import by_class
from search import compat, frameworks, record, schedules, storage
from search.contest.law import Transfer, moved
from search.contest.law import transfer as lr_transfer
from search.contest.standing import Standing, standing
from search.contest.state import Settings
from search.errors import UserError
from search.goal import DEFAULT, Goal
from search.progress import what_ran
from search.recommendation import Recommendation, lr_shown, optimizer_call, optimizer_line
from search.stats import Validation
from search.validation.companion import validation

__all__ = ["FORMATS", "NotYet", "Recommendation", "Validation", "as_dict", "best_trial",
           "from_trial", "optimizer_call", "optimizer_line", "pending_text", "recommend",
           "recommended_trial", "render", "trial_of", "validation"]

FORMATS = ("text", "json", "python", "lightning", "hf")


class NotYet(UserError):
    """A contest that has not yet finished a run at the study's length: it has no
    recommendation and `best` no code (a shorter horizon's run is never the answer). The
    message is one line; `pending_text` says the same for people, with what exists so far."""

    def __init__(self, st: Standing) -> None:
        self.standing = st
        short = st.leading_short()
        again = (f" (`{storage.hint_command(f'best --study {st.study} --trial {short[0].number}')}"
                 "` exports a finished trial as it is)") if short is not None else ""
        super().__init__(f"{st.pending()}; `best` prints code once one has finished{again}")


def pending_text(st: Standing) -> str:
    """`best`'s text while a contest has no run at the study's length: where it stands, the
    leading reference of the longest horizon so far (what exists), and why no code yet."""
    again = storage.hint_command(f"best --study {st.study}")
    short = st.leading_short()
    trial = "" if short is None else (f" (`--trial {short[0].number}` exports trial "
                                      f"{short[0].number} as it is)")
    return "\n".join([
        f"No recommendation yet from study {st.study!r}: its contest is unfinished",
        *st.lines(),
        f"  code     : none yet: `{again}` prints it once a {st.budget}-epoch run has "
        f"finished{trial}",
    ])


def best_trial(study: optuna.Study) -> FrozenTrial:
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not trials:
        raise UserError(
            f"study {study.study_name!r} has no complete trial yet; run "
            f"`{storage.hint_command(f'run --study {study.study_name}')}` first (a pruned trial "
            "exports with `--trial N`)"
        )
    goal = Goal.of_study(study)
    return max(trials, key=lambda t: (goal.score(t.value), -t.number))


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
                      unfinished="" if st.decided else st.stage.text())
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


def _text(rec: Recommendation) -> str:
    st = rec.standing
    if rec.asked:  # `--trial N`: as asked, not chosen
        head = (f"Schedule of study {rec.study!r}: trial {rec.trial_number}, {rec.asked}, "
                f"{rec.outcome()}")
    elif st is not None:
        which = "" if rec.label.startswith(f"trial {rec.trial_number} ") else (
            f" (trial {rec.trial_number})")
        what = "Recommended schedule" if st.state.racing else "Leading schedule so far"
        head = f"{what} of study {rec.study!r}: {rec.label}{which}, {rec.outcome()}"
    else:
        head = (f"{'Best schedule' if rec.state == 'COMPLETE' else 'Schedule'} of study "
                f"{rec.study!r}: trial {rec.trial_number}, {rec.family}, {rec.outcome()}")
    lines = [
        head,
        *(st.lines() if st is not None else []),
        *(rec.validation.lines() if rec.validation else [] if rec.asked else [
            f"  (not validated: `{storage.hint_command(f'validate --study {rec.study}')}` "
            "re-trains it "
            "and the tuned baselines on new seeds, scored on the test set)"]),
        *([f"  scheduler kwargs : {json.dumps(lr_shown(rec.kwargs))}"]
          if not rec.schedule_free else []),
        f"  optimizer        : {optimizer_line(rec.optimizer)}",
        f"  stepping         : {rec.stepping()}",
    ]
    if rec.schedule_free:
        lines.append(f"  its LR           : {rec.schedule_free_note()}")
    if rec.warmup:
        steps = rec.warmup["total_iters"]
        lines.append(f"  warmup           : linear over {steps} optimizer steps")
    budget = f"{rec.epochs} epochs x {rec.steps_per_epoch} steps"
    if (rec.epochs, rec.steps_per_epoch) != (rec.searched_epochs, rec.searched_steps_per_epoch):
        budget += (f" (rescaled from the searched {rec.searched_epochs} x "
                   f"{rec.searched_steps_per_epoch})")
    lines.append(f"  budget           : {budget}")
    if rec.transfer is not None:
        lines += rec.transfer.lines()
    v = rec.validation
    if v is not None and v.steps_per_epoch and (v.epochs, v.steps_per_epoch) != (
            rec.epochs, rec.steps_per_epoch):
        flags = f"--epochs {v.epochs} --steps-per-epoch {v.steps_per_epoch}"
        lines.append(f"  validated as     : {v.epochs} epochs x {v.steps_per_epoch} steps, the "
                     f"same schedule resolved for that budget (`{flags}` prints exactly what "
                     "was validated)")
    lines += ["", rec.code()]
    return "\n".join(lines)


def as_dict(rec: Recommendation) -> dict[str, Any]:
    """`--format json`: every field, the code, the validation and how each framework steps it."""
    out = asdict(replace(rec, validation=None, standing=None, transfer=None))
    del out["validation"], out["standing"], out["transfer"]
    out["contest"] = rec.standing.fields() if rec.standing is not None else None
    out["lr_transfer"] = rec.transfer.fields() if rec.transfer is not None else None
    out["step"] = rec.step
    out["code"] = rec.code()
    out |= rec.validation.fields() if rec.validation else Validation.empty_fields()
    out["frameworks"] = frameworks.describe(rec)  # how it steps in Lightning / HF Trainer
    return out


def render(rec: Recommendation, fmt: str = "text", grad_accum: int = 1) -> str:
    """`rec` in a format of FORMATS; `grad_accum`: batches per optimizer step (the counts are
    optimizer steps, and every format says so). The commands it suggests reach the study and
    store this command reached (`storage.carried`)."""
    if fmt == "lightning":
        return frameworks.lightning(rec, grad_accum)
    if fmt == "hf":
        return frameworks.hf(rec, grad_accum)
    if fmt == "json":
        out = as_dict(rec)
        out["code"] = storage.carried(out["code"])
        return json.dumps(out, indent=2)
    if fmt not in ("text", "python"):
        raise UserError(f"`--format` must be one of {', '.join(FORMATS)} but got {fmt!r}")
    code = rec.code()
    text = code if fmt == "python" else _text(rec)
    if grad_accum > 1:  # one line above the code, where the counts are read
        at = max(text.rfind(code), 0)
        text = (f"{text[:at]}# --grad-accum {grad_accum}: every count here is in optimizer "
                f"steps of {grad_accum} batches each (STEPS_PER_EPOCH too)\n{text[at:]}")
    return storage.carried(text)

"""The best trial -> paste-ready PyTorch code, text or JSON; rescaling to another budget.

Reads only the storage: any finished study can be exported from any machine that
reaches the database. Where `validate` has run, the recommendation is the schedule with the
best mean test accuracy over seeds, with its margin over the best baseline (`Validation`).
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import textwrap
from dataclasses import asdict, dataclass, replace
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from search import frameworks, runner, schedules, stats
from search.errors import UserError
from search.stats import Validation

__all__ = ["FORMATS", "Recommendation", "Validation", "best_trial", "optimizer_call",
           "optimizer_line", "recommend", "render", "validation"]

FORMATS = ("text", "json", "python", "lightning", "hf")
STEP_WORDS = {
    schedules.EPOCH: ("epoch", "call scheduler.step() once after each epoch"),
    schedules.ITERATION: ("batch", "call scheduler.step() after every optimizer.step()"),
    schedules.PLATEAU: ("val_loss", "call scheduler.step(val_loss) after each epoch's validation"),
}


@dataclass(frozen=True)
class Recommendation:
    study: str
    trial_number: int
    value: float | None  # validation accuracy of the searched trial (last reported if pruned)
    family: str
    kwargs: dict[str, Any]  # exact kwargs for `epochs` x `steps_per_epoch`
    interval: str  # epoch | iteration | plateau
    warmup: dict[str, Any] | None
    optimizer: dict[str, Any]
    epochs: int
    steps_per_epoch: int
    searched_epochs: int
    searched_steps_per_epoch: int
    validation: Validation | None = None  # the test-set results, where `validate` has run
    state: str = "COMPLETE"  # or PRUNED (`best --trial N` of a pruned trial)
    epochs_trained: int = 0

    @property
    def step(self) -> str:
        return STEP_WORDS[self.interval][0]

    def scheduler_code(self) -> str:
        main = schedules.family(self.family).code(self.kwargs)
        if self.warmup is None:
            return main
        w = self.warmup
        return (
            f"torch.optim.lr_scheduler.SequentialLR(optimizer, [\n"
            f"    torch.optim.lr_scheduler.LinearLR(optimizer, start_factor="
            f"{schedules.lit(w['start_factor'])}, total_iters={w['total_iters']}),\n"
            f"{textwrap.indent(main, '    ')},\n"
            f"], milestones=[{w['total_iters']}])"
        )

    def outcome(self) -> str:
        acc = "no validation accuracy" if self.value is None else (
            f"validation accuracy {self.value:.4f}")
        if self.state == "PRUNED":
            return f"pruned after {self.epochs_trained} of {self.searched_epochs} epochs ({acc})"
        return acc

    def optimizer_code(self) -> str:
        """The optimizer the trial trained with, as torch received it, on `params`."""
        name, kwargs = optimizer_call(self.optimizer)
        args = ", ".join(f"{k}={_lit(v)}" for k, v in kwargs.items())
        return f"{name}(params, {args})"

    def code(self) -> str:
        word, how = STEP_WORDS[self.interval]
        loop_step = {
            "epoch": "        scheduler.step()                          # once per epoch",
            "batch": "            scheduler.step()                      # once per batch",
            "val_loss": "        scheduler.step(val_loss)                  # after validation",
        }[word]
        inner_after = loop_step if word == "batch" else ""
        outer_after = "" if word == "batch" else loop_step
        sched = textwrap.indent(self.scheduler_code(), "    ").lstrip()
        return f'''"""Learning-rate schedule found by schedsearch.

Study {self.study!r}, trial {self.trial_number}: {self.family}, {self.outcome()}.
Stepping: {how}.
Computed for {self.epochs} epochs of {self.steps_per_epoch} optimizer steps each; for another
length run `python -m search best --study {self.study} --epochs N --steps-per-epoch M`.
"""
import torch

EPOCHS = {self.epochs}
STEPS_PER_EPOCH = {self.steps_per_epoch}
STEP = {word!r}  # when to call scheduler.step(): "epoch", "batch" or "val_loss"


def make_optimizer_and_scheduler(params):
    optimizer = {self.optimizer_code()}
    scheduler = {sched}
    return optimizer, scheduler


# In your training loop:
#
#     optimizer, scheduler = make_optimizer_and_scheduler(model.parameters())
#     for epoch in range(EPOCHS):
#         for inputs, targets in train_loader:          # STEPS_PER_EPOCH batches
#             loss = criterion(model(inputs), targets)
#             optimizer.zero_grad()
#             loss.backward()
#             optimizer.step()
{textwrap.indent(inner_after, "# ") if inner_after else "#"}
#         val_loss = evaluate(model, val_loader)
{textwrap.indent(outer_after, "# ") if outer_after else "#"}
'''

    def to_dict(self) -> dict[str, Any]:
        out = asdict(replace(self, validation=None))
        del out["validation"]
        out["step"] = self.step
        out["code"] = self.code()
        out |= self.validation.fields() if self.validation else Validation.empty_fields()
        out["frameworks"] = frameworks.describe(self)  # how it steps in Lightning / HF Trainer
        return out


# Always printed where recorded, even at torch's default: the knobs a reader looks for.
_SHOWN = ("lr", "momentum", "nesterov", "betas", "eps", "weight_decay")


def _lit(v: Any) -> str:
    if isinstance(v, list | tuple):  # betas: a tuple, as torch documents it
        return "(" + ", ".join(_lit(x) for x in v) + ")"
    return schedules.lit(v)


def optimizer_call(o: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A recorded optimizer -> (qualified class name, the kwargs worth printing): the shown
    knobs, and every other argument where it differs from the class's default."""
    name = o.get("name", "SGD")  # trials recorded before the name was: SGD
    module = "torch.optim" if hasattr(torch.optim, name) else "schedulefree"
    try:
        cls = getattr(importlib.import_module(module), name)
        defaults = {k: p.default for k, p in inspect.signature(cls).parameters.items()}
    except (ImportError, AttributeError):  # schedulefree not installed here: print them all
        defaults = {}

    def differs(k: str, v: Any) -> bool:
        d = defaults.get(k, inspect.Parameter.empty)
        return list(d) != list(v) if isinstance(v, list) and isinstance(d, tuple) else d != v
    keys = sorted(o, key=lambda k: _SHOWN.index(k) if k in _SHOWN else len(_SHOWN))
    kwargs = {k: o[k] for k in keys if k != "name" and (k in _SHOWN or differs(k, o[k]))}
    return f"{module}.{name}", kwargs


def optimizer_line(o: dict[str, Any]) -> str:
    """One line: `AdamW lr=0.003 betas=(0.9, 0.999) eps=1e-08 weight_decay=0.05`."""
    name, kwargs = optimizer_call(o)
    return " ".join([name.rsplit(".", 1)[1], *(f"{k}={_lit(v)}" for k, v in kwargs.items())])


def best_trial(study: optuna.Study) -> FrozenTrial:
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not trials:
        raise UserError(
            f"study {study.study_name!r} has no complete trial yet; run "
            f"`python -m search run --study {study.study_name}` first (a pruned trial "
            "exports with `--trial N`)"
        )
    return max(trials, key=lambda t: t.value)


def from_trial(
    study_name: str, trial: FrozenTrial, epochs: int | None = None,
    steps_per_epoch: int | None = None,
) -> Recommendation:
    """A trial's schedule for `epochs` x `steps_per_epoch` (default: as searched).

    The one rescaling path: the recorded budget-free schedule resolved for the budget
    (`schedules.resolve`), exactly as training builds it.
    """
    a = trial.user_attrs
    s = runner.schedule_of(trial)
    e0, s0 = int(a["epochs"]), int(a["steps_per_epoch"])
    e1, s1 = epochs or e0, steps_per_epoch or s0
    if e1 < 1 or s1 < 1:
        raise UserError(f"`--epochs` and `--steps-per-epoch` must be >= 1 but got {e1}, {s1}")
    built = schedules.resolve(s, e1, s1)
    value = float(trial.value) if trial.value is not None else None
    if value is None and trial.intermediate_values:
        value = float(trial.intermediate_values[max(trial.intermediate_values)])
    return Recommendation(
        study=study_name, trial_number=trial.number, value=value, state=trial.state.name,
        epochs_trained=len(a.get("val_acc_curve", ())),
        family=s.family, kwargs=built.kwargs, interval=built.interval, warmup=built.warmup,
        optimizer=a["optimizer"],  # recorded beside `schedule` by every trial loop
        epochs=e1, steps_per_epoch=s1, searched_epochs=e0, searched_steps_per_epoch=s0,
    )


def trial_of(study: optuna.Study, number: int) -> FrozenTrial:
    """Finished trial `number` of `study` (complete or pruned), for `best --trial N`."""
    trial = _trial_by_number(study, number)
    if trial is None:
        raise UserError(f"study {study.study_name!r} has no trial {number}; "
                        f"`python -m search report --study {study.study_name}` lists them")
    if trial.state not in (TrialState.COMPLETE, TrialState.PRUNED):
        raise UserError(f"trial {number} of {study.study_name!r} is "
                        f"{trial.state.name.lower()}, not finished; pick a complete or pruned "
                        "trial")
    return trial


def recommend(
    study: optuna.Study, epochs: int | None = None, steps_per_epoch: int | None = None,
    trial_number: int | None = None,
) -> Recommendation:
    """The recommended schedule: the validated winner (best mean test accuracy over seeds)
    where `validate` has run, else the study's best finished trial; or trial `trial_number`."""
    if trial_number is not None:
        return from_trial(study.study_name, trial_of(study, trial_number), epochs,
                          steps_per_epoch)
    val = validation(study, epochs)
    trial = None
    if val is not None and val.winner is not None and val.winner.source_trial is not None:
        trial = _trial_by_number(study, val.winner.source_trial)
    rec = from_trial(study.study_name, trial or best_trial(study), epochs, steps_per_epoch)
    return replace(rec, validation=val) if val is not None else rec


def validation(study: optuna.Study, epochs: int | None = None) -> Validation | None:
    """What `validate` found for `study` in its companion study: the runs at `epochs` where
    there are any, else at the searched length. None where it never ran."""
    from search.validate import COMPANION_SUFFIX, companion_name

    if study.study_name.endswith(COMPANION_SUFFIX):
        return None  # a validation study is not validated itself
    try:
        study = optuna.load_study(study_name=companion_name(study.study_name),
                                  storage=study._storage)
    except KeyError:
        return None
    by_length: dict[int, list[FrozenTrial]] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        if "validate_key" in t.user_attrs and t.user_attrs.get("holdout", "test") == "test":
            by_length.setdefault(int(t.user_attrs["epochs"]), []).append(t)  # not LR sweeps
    if not by_length:
        return None
    attrs = study.user_attrs
    searched = attrs.get("searched_epochs")
    length = next((e for e in (epochs, searched) if e in by_length),
                  max(by_length, key=lambda e: (len(by_length[e]), -e)))
    meta = {k.removeprefix("schedule."): v for k, v in attrs.items()
            if k.startswith("schedule.")}
    runs: dict[str, dict[str, Any]] = {}
    for t in sorted(by_length[length], key=lambda t: t.number):
        a = t.user_attrs
        r = runs.setdefault(a["validate_key"], {"trial": a, "scores": {}, "diverged": []})
        seed = int(a["seed"])
        if seed in r["scores"] or seed in r["diverged"]:
            continue  # the first finished run of a (schedule, seed) counts
        if t.state == TrialState.COMPLETE and math.isfinite(t.value):
            r["scores"][seed] = float(t.value)
        elif a.get("end_reason") == "non_finite_loss":
            r["diverged"].append(seed)
    results = []
    for key, r in runs.items():
        m, a = meta.get(key, {}), r["trial"]
        results.append(stats.Result(
            key=key, label=m.get("label", a.get("label", key)),
            roles=tuple(m.get("roles", a.get("roles", ()))), scores=r["scores"],
            source_trial=m.get("source_trial", a.get("source_trial")),
            diverged=tuple(r["diverged"]), family=m.get("family", ""),
            extra={"lr": m.get("lr"), "lr_source": m.get("lr_source", "")}))
    steps = sorted({int(t.user_attrs["steps_per_epoch"]) for t in by_length[length]
                    if "steps_per_epoch" in t.user_attrs})
    return Validation(
        study=study.study_name, epochs=length, ranked=tuple(stats.rank(results)),
        other_epochs=tuple(sorted(set(by_length) - {length})),
        notes=tuple(attrs.get("notes", ())), steps_per_epoch=steps[0] if len(steps) == 1 else 0)


def _trial_by_number(study: optuna.Study, number: int) -> FrozenTrial | None:
    store = study._storage
    try:
        return store.get_trial(store.get_trial_id_from_study_id_trial_number(
            study._study_id, number))
    except KeyError:
        return None


def _text(rec: Recommendation) -> str:
    lines = [
        f"{'Best schedule' if rec.state == 'COMPLETE' else 'Schedule'} of study "
        f"{rec.study!r}: trial {rec.trial_number}, {rec.family}, {rec.outcome()}",
        *(rec.validation.lines() if rec.validation else [
            f"  (not validated: `python -m search validate --study {rec.study}` re-trains it "
            "and baselines on new seeds, scored on the test set)"]),
        f"  scheduler kwargs : {json.dumps(rec.kwargs)}",
        f"  optimizer        : {optimizer_line(rec.optimizer)}",
        f"  stepping         : {STEP_WORDS[rec.interval][1]}",
    ]
    if rec.warmup:
        steps = rec.warmup["total_iters"]
        lines.append(f"  warmup           : linear over {steps} optimizer steps")
    budget = f"{rec.epochs} epochs x {rec.steps_per_epoch} steps"
    if (rec.epochs, rec.steps_per_epoch) != (rec.searched_epochs, rec.searched_steps_per_epoch):
        budget += (f" (rescaled from the searched {rec.searched_epochs} x "
                   f"{rec.searched_steps_per_epoch})")
    lines.append(f"  budget           : {budget}")
    v = rec.validation
    if v is not None and v.steps_per_epoch and (v.epochs, v.steps_per_epoch) != (
            rec.epochs, rec.steps_per_epoch):
        flags = f"--epochs {v.epochs} --steps-per-epoch {v.steps_per_epoch}"
        lines.append(f"  validated as     : {v.epochs} epochs x {v.steps_per_epoch} steps, the "
                     f"same schedule resolved for that budget (`{flags}` prints exactly what "
                     "was validated)")
    lines += ["", rec.code()]
    return "\n".join(lines)


def render(rec: Recommendation, fmt: str = "text", grad_accum: int = 1) -> str:
    """`rec` in a format of FORMATS; `grad_accum`: batches per optimizer step (hf only)."""
    if fmt == "lightning":
        return frameworks.lightning(rec)
    if fmt == "hf":
        return frameworks.hf(rec, grad_accum)
    if fmt == "json":
        return json.dumps(rec.to_dict(), indent=2)
    if fmt == "python":
        return rec.code()
    if fmt == "text":
        return _text(rec)
    raise UserError(f"`--format` must be one of {', '.join(FORMATS)} but got {fmt!r}")

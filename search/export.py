"""The best trial -> paste-ready PyTorch code, text or JSON; rescaling to another budget.

Reads only the storage: any finished study can be exported from any machine that
reaches the database.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import asdict, dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search import schedules
from search.errors import UserError

__all__ = ["FORMATS", "Recommendation", "best_trial", "recommend", "render"]

FORMATS = ("text", "json", "python")
STEP_WORDS = {
    schedules.EPOCH: ("epoch", "call scheduler.step() once after each epoch"),
    schedules.ITERATION: ("batch", "call scheduler.step() after every optimizer.step()"),
    schedules.PLATEAU: ("val_loss", "call scheduler.step(val_loss) after each epoch's validation"),
}


@dataclass(frozen=True)
class Recommendation:
    study: str
    trial_number: int
    value: float  # validation accuracy of the searched trial
    family: str
    kwargs: dict[str, Any]  # exact kwargs for `epochs` x `steps_per_epoch`
    interval: str  # epoch | iteration | plateau
    warmup: dict[str, Any] | None
    optimizer: dict[str, Any]
    epochs: int
    steps_per_epoch: int
    searched_epochs: int
    searched_steps_per_epoch: int

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

    def optimizer_code(self) -> str:
        o = self.optimizer
        return (
            f"torch.optim.SGD(params, lr={schedules.lit(float(o['lr']))}, "
            f"momentum={schedules.lit(float(o['momentum']))}, nesterov={bool(o['nesterov'])}, "
            f"weight_decay={schedules.lit(float(o['weight_decay']))})"
        )

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

Study {self.study!r}, trial {self.trial_number}: {self.family}, validation accuracy \
{self.value:.4f}.
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
        out = asdict(self)
        out["step"] = self.step
        out["code"] = self.code()
        return out


def best_trial(study: optuna.Study) -> FrozenTrial:
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not trials:
        raise UserError(
            f"study {study.study_name!r} has no finished trial yet; run "
            f"`python -m search run --study {study.study_name}` first"
        )
    return max(trials, key=lambda t: t.value)


def from_trial(
    study_name: str, trial: FrozenTrial, epochs: int | None = None,
    steps_per_epoch: int | None = None,
) -> Recommendation:
    """A trial's schedule, rescaled to `epochs` x `steps_per_epoch` when given."""
    a = trial.user_attrs
    family = trial.params.get("scheduler", a.get("scheduler"))
    if family is None or "scheduler_kwargs" not in a:
        raise UserError(f"trial {trial.number} of {study_name!r} carries no schedule record")
    e0, s0 = int(a["epochs"]), int(a["steps_per_epoch"])
    e1, s1 = epochs or e0, steps_per_epoch or s0
    if e1 < 1 or s1 < 1:
        raise UserError(f"`--epochs` and `--steps-per-epoch` must be >= 1 but got {e1}, {s1}")
    warmup = a.get("warmup")
    units = schedules.units_of(family, warmup is not None)
    kwargs = schedules.rescale(a["scheduler_kwargs"], units, (e0, s0), (e1, s1))
    if warmup is not None:
        warmup = schedules.rescale(warmup, {"total_iters": schedules.ITERS}, (e0, s0), (e1, s1))
    return Recommendation(
        study=study_name, trial_number=trial.number, value=float(trial.value),
        family=family, kwargs=kwargs, interval=a["interval"], warmup=warmup,
        optimizer=a.get("optimizer", {"lr": trial.params.get("lr"), "momentum": 0.9,
                                      "nesterov": True, "weight_decay": 5e-4}),
        epochs=e1, steps_per_epoch=s1, searched_epochs=e0, searched_steps_per_epoch=s0,
    )


def recommend(
    study: optuna.Study, epochs: int | None = None, steps_per_epoch: int | None = None
) -> Recommendation:
    """The study's best finished trial as a recommendation."""
    return from_trial(study.study_name, best_trial(study), epochs, steps_per_epoch)


def _text(rec: Recommendation) -> str:
    o = rec.optimizer
    lines = [
        f"Best schedule of study {rec.study!r}: trial {rec.trial_number}, {rec.family}, "
        f"validation accuracy {rec.value:.4f}",
        f"  scheduler kwargs : {json.dumps(rec.kwargs)}",
        f"  optimizer        : SGD lr={o['lr']:.4g} momentum={o['momentum']:.3g} "
        f"nesterov={o['nesterov']} weight_decay={o['weight_decay']:.3g}",
        f"  stepping         : {STEP_WORDS[rec.interval][1]}",
    ]
    if rec.warmup:
        steps = rec.warmup["total_iters"]
        lines.append(f"  warmup           : linear over {steps} optimizer steps")
    budget = f"{rec.epochs} epochs x {rec.steps_per_epoch} steps"
    if (rec.epochs, rec.steps_per_epoch) != (rec.searched_epochs, rec.searched_steps_per_epoch):
        budget += (f" (rescaled from the searched {rec.searched_epochs} x "
                   f"{rec.searched_steps_per_epoch})")
    lines += [f"  budget           : {budget}", "", rec.code()]
    return "\n".join(lines)


def render(rec: Recommendation, fmt: str = "text") -> str:
    if fmt == "json":
        return json.dumps(rec.to_dict(), indent=2)
    if fmt == "python":
        return rec.code()
    if fmt == "text":
        return _text(rec)
    raise UserError(f"`--format` must be one of {', '.join(FORMATS)} but got {fmt!r}")

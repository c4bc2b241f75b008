"""A recommended schedule: the exact torch kwargs of one trial at one budget, and its code.

`Recommendation` holds what `best` prints; its methods write the paste-ready PyTorch (the
scheduler as the trial built it, the optimizer as torch received it). Building one from a
trial is search.answer.choose's, its text and JSON search.answer.text's and .fields', the
framework forms search.answer.frameworks'.
"""

from __future__ import annotations

import importlib
import inspect
import textwrap
from dataclasses import dataclass
from typing import Any

import torch

from objectives.optimizers import by_class
from search import schedules
from search.goal import Goal
from search.progress import lr_text
from search.stats import Validation

__all__ = ["LR_KEYS", "STEP_WORDS", "Recommendation", "lr_shown", "optimizer_call",
           "optimizer_line"]

# The kwargs that are LRs (the optimizer's; a scheduler's peak and floor): the text shows them
# rounded (search.progress.lr_text), the code exactly (schedules.lit).
LR_KEYS = ("lr", "max_lr", "eta_min", "min_lr")

STEP_WORDS = {
    schedules.EPOCH: ("epoch", "call scheduler.step() once after each epoch"),
    schedules.ITERATION: ("batch", "call scheduler.step() after every optimizer.step()"),
    schedules.PLATEAU: ("val_loss", "call scheduler.step(val_loss) after each epoch's validation"),
}


@dataclass(frozen=True)
class Recommendation:
    study: str
    trial_number: int
    value: float | None  # the study's metric of the searched trial (last reported if pruned)
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
    label: str = ""  # the contest's name for it ("linear to zero", "trial 17 OneCycleLR")
    standing: Any = None  # search.contest.standing.Standing, where the study runs a contest
    transfer: Any = None  # search.contest.law.Transfer: how the LR was carried to `epochs`
    goal: Goal = Goal()  # what the study optimises (its metric's name, which way is better)
    unfinished: str = ""  # where an unfinished contest stands ("" where decided, or a plain
    # search): this is its leader so far, and every form says so (`outcome`)
    asked: str = ""  # `best --trial N`: what that trial ran (search.progress.what_ran)

    @property
    def lr(self) -> float:
        """The LR the optimizer receives (the peak of the schedule)."""
        return float(self.optimizer.get("lr", float("nan")))

    @property
    def step(self) -> str:
        return STEP_WORDS[self.interval][0]

    @property
    def schedule_free(self) -> bool:
        """A schedule-free optimizer: no scheduler at all (the optimizer averages its iterates
        and needs optimizer.train() / optimizer.eval() around training and evaluation)."""
        kind = by_class(str(self.optimizer.get("name", "")))
        return kind is not None and kind.schedule_free

    def stepping(self) -> str:
        if self.schedule_free:
            return ("no scheduler: call optimizer.train() before training and optimizer.eval() "
                    "before evaluating (schedule-free)")
        return STEP_WORDS[self.interval][1]

    def schedule_free_note(self) -> str:
        lr: Any = self.optimizer.get("lr")  # the trial's record: JSON
        kind = by_class(str(self.optimizer.get("name")))
        assert kind is not None  # only for a schedule-free optimizer: one of the table's
        return (f"{lr_text(lr)} is the schedule-free optimizer's own LR; its authors use "
                f"{kind.lr_range} the LR of the same optimizer with a schedule, and this one was "
                "tuned on the validation split")

    def scheduler_code(self) -> str:
        """The scheduler as the trial built it (search.schedules.codegen: its construction)."""
        return schedules.scheduler_code(self.family, self.kwargs, self.warmup)

    def outcome(self) -> str:
        """Its score in words; an unfinished contest's leader says it is one so far."""
        so_far = f"; the contest is unfinished: {self.unfinished}" if self.unfinished else ""
        lead = self.standing.leader if self.standing is not None else None
        name = self.goal.name()
        if lead is not None and lead.n > 1:
            return (f"{name} {self.goal.text(lead.mean)} ± {lead.std:.4f} (mean ± std over "
                    f"{lead.n} seeds){so_far}")
        acc = f"no {name}" if self.value is None else f"{name} {self.value:.4f}"
        if self.state == "PRUNED":
            return f"pruned after {self.epochs_trained} of {self.searched_epochs} epochs ({acc})"
        return acc + so_far

    def optimizer_code(self) -> str:
        """The optimizer the trial trained with, as torch received it, on `params`."""
        name, kwargs = optimizer_call(self.optimizer)
        args = ", ".join(f"{k}={_lit(v)}" for k, v in kwargs.items())
        return f"{name}(params, {args})"

    def code(self) -> str:
        if self.schedule_free:
            return self._schedule_free_code()
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


    def _schedule_free_code(self) -> str:
        module = self.optimizer_code().split(".", 1)[0]
        return f'''"""Optimizer found by schedsearch: schedule-free, no learning-rate scheduler.

Study {self.study!r}, trial {self.trial_number}: {self.label or self.family}, {self.outcome()}.
Schedule-free optimizers average their iterates instead of decaying the LR, so there is no
scheduler to step; call optimizer.train() before training and optimizer.eval() before
evaluating (BatchNorm statistics: run a few training batches in eval mode first).
Tuned for {self.epochs} epochs of {self.steps_per_epoch} optimizer steps each.
"""
import {module}  # pip install schedulefree

EPOCHS = {self.epochs}
STEPS_PER_EPOCH = {self.steps_per_epoch}
STEP = None  # no scheduler


def make_optimizer_and_scheduler(params):
    optimizer = {self.optimizer_code()}
    return optimizer, None


# In your training loop:
#
#     optimizer, _ = make_optimizer_and_scheduler(model.parameters())
#     for epoch in range(EPOCHS):
#         model.train()
#         optimizer.train()
#         for inputs, targets in train_loader:          # STEPS_PER_EPOCH batches
#             loss = criterion(model(inputs), targets)
#             optimizer.zero_grad()
#             loss.backward()
#             optimizer.step()
#         model.eval()
#         optimizer.eval()
#         val_loss = evaluate(model, val_loader)
'''


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
    """One line for people: `AdamW lr=0.003 betas=(0.9, 0.999) eps=1e-08 weight_decay=0.05`
    (the LR rounded, `lr_shown`; the code prints it exactly)."""
    name, kwargs = optimizer_call(o)
    return " ".join([name.rsplit(".", 1)[1],
                     *(f"{k}={_lit(v)}" for k, v in lr_shown(kwargs).items())])


def lr_shown(kwargs: dict[str, Any]) -> dict[str, Any]:
    """`kwargs` for a line people read: each LR (LR_KEYS) rounded as `lr_text` shows it, the
    rest as they are (a gamma rounded would be another schedule)."""
    return {k: float(lr_text(v)) if k in LR_KEYS and isinstance(v, float) else v
            for k, v in kwargs.items()}

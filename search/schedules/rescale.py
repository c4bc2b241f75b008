"""Rescaling: a budget-free schedule -> the exact torch kwargs for a budget, and the scheduler.

Budget-free schedules. A `ScheduleConfig` describes the LR as a function of the *fraction of
training*: lengths are fractions of the run, decays are what is reached by the end of the
run, and an added warmup is a fraction of the run. `resolve(schedule, epochs,
steps_per_epoch)` is the one place that turns it into the exact kwargs torch receives for a
budget. Moving a schedule to another training length (`best --epochs`, `validate`, every
export) is therefore nothing but resolving it for that budget: epoch and iteration counts
scale, per-step factors and rates are converted so that the same LR is reached at the same
fraction of training, and a warmup stays the same fraction of the run. Counts are rounded
to whole scheduler steps, so two budgets agree up to one scheduler step of the shorter one
around each boundary.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from torch.optim import Optimizer

from search import record
from search.errors import UserError
from search.schedules.catalog import EPOCH, ITERATION, PLATEAU, WARMUP_START_FACTOR, family
from search.schedules.construction import construct, with_warmup

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

__all__ = ["TRACE_POINTS", "Built", "ScheduleConfig", "build", "resolve", "stepped_per_step"]

TRACE_POINTS = 256  # the applied LR is recorded at about this many optimizer steps per run


@dataclass(frozen=True)
class ScheduleConfig:
    """What a trial trains with: a family, its budget-free parameters, the optimizer knobs.

    `params` hold the family's parameters without the `<Family>.` prefix (epoch-kind ones as
    fractions of the run). `warmup` is the fraction of the run spent in an added linear
    warmup (0: none). `per_step`: a family that steps per epoch in torch's usage steps per
    optimizer step instead (`stepped_per_step` says which; its lengths count optimizer
    steps), so the LR is the same function of the fraction of training at every length.
    `listener`, when set, is called with the `Built` schedule once it exists (the runner uses
    it to record the exact kwargs without the objective knowing about it).
    """

    family: str
    params: Mapping[str, Any] = field(default_factory=dict)
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup: float = 0.0
    beta1: float | None = None  # AdamW's betas where the search draws them (else the objective's)
    beta2: float | None = None
    per_step: bool = False
    listener: Callable[[Built], None] | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able; `from_dict` gives the same schedule back (the trial's record)."""
        return {"family": self.family, "params": dict(self.params), "lr": self.lr,
                "momentum": self.momentum, "weight_decay": self.weight_decay,
                "warmup": self.warmup,
                **{k: v for k, v in (("beta1", self.beta1), ("beta2", self.beta2))
                   if v is not None},
                **({"per_step": True} if self.per_step else {})}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ScheduleConfig:
        return cls(family=d["family"], params=dict(d["params"]), lr=float(d["lr"]),
                   momentum=float(d["momentum"]), weight_decay=float(d["weight_decay"]),
                   warmup=float(d["warmup"]), per_step=bool(d.get("per_step", False)),
                   beta1=None if d.get("beta1") is None else float(d["beta1"]),
                   beta2=None if d.get("beta2") is None else float(d["beta2"]))

    def build(self, optimizer: Optimizer, steps_per_epoch: int, epochs: int) -> Built:
        """torch's scheduler for this schedule on `optimizer` (`build`): what an objective
        calls, so that it needs nothing from search."""
        return build(optimizer, self, steps_per_epoch, epochs)


@dataclass
class Built:
    """A scheduler ready to step, the exact kwargs it was made with, and the LRs it applied."""

    family: str
    scheduler: Any
    interval: str
    kwargs: dict[str, Any]
    warmup: dict[str, Any] | None  # LinearLR kwargs of the added warmup, in iterations
    epochs: int = 0  # the budget the kwargs were resolved for
    steps_per_epoch: int = 0  # optimizer steps per epoch
    # the LR each optimizer step applied, at steps 0, every, 2 * every, ... (read from the
    # optimizer's param_groups when the step is taken, as Lightning's LearningRateMonitor does)
    trace: list[float] = field(default_factory=list)
    every: int = 1
    schedule: ScheduleConfig | None = None  # what was resolved (budget-free)
    _steps: int = 0

    @property
    def steps(self) -> int:
        """Optimizer steps taken so far (counted by after_batch / note_step)."""
        return self._steps

    def after_batch(self) -> None:
        """Call after every optimizer.step(), before anything else changes the LR."""
        self.note_step()
        if self.interval == ITERATION:
            self.scheduler.step()

    def note_step(self) -> None:
        """Record the LR an optimizer step applied, without stepping the scheduler: for a loop
        that steps it itself (Lightning, the HF Trainer), called at the same point."""
        if self._steps % self.every == 0:
            self.trace.append(float(self.scheduler.optimizer.param_groups[0]["lr"]))
        self._steps += 1

    def after_epoch(self, val_loss: float) -> None:
        """Call once after every epoch's validation."""
        if self.interval == EPOCH:
            self.scheduler.step()
        elif self.interval == PLATEAU:
            self.scheduler.step(val_loss)


def stepped_per_step(name: str, per_epoch: tuple[str, ...] = ()) -> bool:
    """Whether a schedule of family `name` steps per optimizer step (`ScheduleConfig.per_step`):
    every family torch steps per epoch does, unless the study keeps it per epoch (`per_epoch`,
    the study file's `[space] per_epoch`). Stepped per epoch, whole-run shapes collapse at
    short lengths (over 2 epochs cosine and linear-to-zero are the same two-step staircase,
    over 1 every one is a constant LR); stepped per optimizer step they stay distinct."""
    return family(name).interval == EPOCH and name not in per_epoch


def resolve(schedule: ScheduleConfig, epochs: int, steps_per_epoch: int) -> Built:
    """The exact kwargs for `epochs` x `steps_per_epoch`, without building anything.

    1. An added warmup takes round(warmup x all steps) optimizer steps (families with a
       warmup of their own and ReduceLROnPlateau get none).
    2. The family's schedule spans the rest of the run: all epochs when it steps per epoch,
       else the optimizer steps after the warmup, so it ends where the family ends (cosine
       at eta_min, polynomial at 0) when training ends. A `per_step` schedule of a family
       that torch steps per epoch steps per optimizer step (its counts in optimizer steps).
    """
    fam = family(schedule.family)
    per_step = schedule.per_step and fam.interval == EPOCH
    total = epochs * steps_per_epoch
    warm = min(total - 1, round(schedule.warmup * total)) if fam.warmup_ok else 0
    if warm > 0:
        warmup: dict[str, Any] | None = {"start_factor": WARMUP_START_FACTOR, "total_iters": warm}
        interval, horizon = ITERATION, total - warm
    else:
        warmup, interval = None, ITERATION if per_step else fam.interval
        horizon = total if interval == ITERATION else epochs
    kwargs = fam.kwargs(schedule.params, schedule.lr, horizon)
    every = max(1, math.ceil(total / TRACE_POINTS))
    return Built(fam.name, None, interval, kwargs, warmup, epochs, steps_per_epoch, every=every,
                 schedule=dataclasses.replace(schedule, listener=None))


def build(
    optimizer: Optimizer, schedule: ScheduleConfig, steps_per_epoch: int, epochs: int
) -> Built:
    """torch's scheduler for `schedule` on `optimizer`, and how to step it."""
    built = resolve(schedule, epochs, steps_per_epoch)
    how = family(schedule.family).construction(built.kwargs)
    built.scheduler = construct(optimizer, with_warmup(how, built.warmup))
    if schedule.listener is not None:
        schedule.listener(built)
    return built


def recorded(trial: optuna.Trial | FrozenTrial) -> ScheduleConfig:
    """The budget-free schedule a trial trained with, as training recorded it (search.record)."""
    sched = record.of(trial).schedule
    if sched is None:
        raise UserError(
            f"trial {trial.number} carries no schedule record (it was recorded by an older "
            "schedsearch, or failed before training); pick another trial")
    return ScheduleConfig.from_dict(sched)

"""The optimizers an objective trains with, each described once, as data.

Building one (objectives.classify.make_optimizer), recording and printing it (search.runner,
search.answer.recommendation, search.answer.frameworks), validating a study file
(search.config), the contest's schedule-free baselines (search.contest.contenders) and the
fused arrays (search.engine.array) all read this table; none of them tests a name. No torch
here: the study files are checked without it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["OPTIMIZERS", "Optimizer", "by_class", "nesterov", "study_optimizers"]


@dataclass(frozen=True)
class Optimizer:
    key: str  # TrainConfig.optimizer
    module: str  # where its class lives
    name: str  # its class: what a trial records as the optimizer's `name`
    adam: bool  # takes betas and eps; otherwise momentum
    schedule_free: bool  # no scheduler: optimizer.train() / optimizer.eval() around the loops
    study: bool  # a study file may name it (the schedule-free ones are the contest's baselines)
    fused: bool  # `--array` trains it (objectives.fused.FusedSGD)
    hf: str  # Hugging Face TrainingArguments.optim
    label: str  # for people
    schedule_free_variant: str = ""  # the key of its schedule-free variant
    # the recorded arguments the Hugging Face Trainer reads from `optim_args` for it
    hf_optim_args: tuple[str, ...] = ()
    # schedule-free: its LR over the same optimizer's scheduled LR, the authors' range and
    # the factor the contest centres its grid on
    lr_range: str = ""
    lr_factor: float = 1.0
    # schedule-free: its linear warmup, as a share of the run's optimizer steps
    warmup: float = 0.0

    def warmup_steps(self, total_steps: int) -> int:
        """The warmup's optimizer steps for a run of `total_steps` (training and every export
        at another budget)."""
        return round(self.warmup * total_steps)

    @property
    def nesterov(self) -> bool:
        """Runs Nesterov momentum where it has momentum (`nesterov`)."""
        return not self.adam and not self.schedule_free


OPTIMIZERS: dict[str, Optimizer] = {o.key: o for o in (
    Optimizer("sgd", "torch.optim", "SGD", adam=False, schedule_free=False, study=True,
              fused=True, hf="sgd", label="SGD", schedule_free_variant="schedulefree",
              hf_optim_args=("momentum", "nesterov")),
    Optimizer("adamw", "torch.optim", "AdamW", adam=True, schedule_free=False, study=True,
              fused=False, hf="adamw_torch", label="AdamW",
              schedule_free_variant="schedulefree_adamw"),
    Optimizer("schedulefree", "schedulefree", "SGDScheduleFree", adam=False, schedule_free=True,
              study=False, fused=False, hf="schedule_free_sgd", label="schedule-free SGD",
              lr_range="10-50x", lr_factor=10.0, warmup=0.05),
    Optimizer("schedulefree_adamw", "schedulefree", "AdamWScheduleFree", adam=True,
              schedule_free=True, study=False, fused=False, hf="schedule_free_adamw",
              label="schedule-free AdamW", lr_range="1-10x", lr_factor=3.0, warmup=0.05),
)}


def by_class(name: str) -> Optimizer | None:
    """The optimizer whose class a trial recorded (None for a class not in the table)."""
    return next((o for o in OPTIMIZERS.values() if o.name == name), None)


def study_optimizers() -> list[str]:
    """The keys a study file's `objective.optimizer` may name."""
    return [k for k, o in OPTIMIZERS.items() if o.study]


def nesterov(momentum: float) -> bool:
    """SGD runs Nesterov momentum wherever it has momentum: the one rule, for every loop, every
    record and every printed optimizer."""
    return momentum > 0

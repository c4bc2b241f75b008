"""What `validate` trains: the study's top-k distinct schedules and tuned baselines.

Baselines are tuned as the candidates were: a baseline takes the LR of the study's best
finished trial of its family where the study has MIN_STUDY_TRIALS of them at the same
budget; otherwise its LR is swept first (`sweep_lrs`: SWEEP_STEPS around the study's default
LR, on the validation split, the search's seed and budget; `search.validate.tune` trains it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search import schedules, space
from search.companion import COMPANION_SUFFIX, companion_name
from search.errors import UserError

__all__ = ["BASELINES", "COMPANION_SUFFIX", "MIN_STUDY_TRIALS", "SCHEDULEFREE", "SWEEP_EXTEND",
           "SWEEP_STEPS", "Baseline", "Job", "Plan", "add_baseline", "baselines",
           "companion_name", "job", "plan", "sweep_lrs"]

# The study's optimizer -> its schedule-free variant (TrainConfig.optimizer), its label, and
# the LR factor over the scheduled LR: its authors suggest 10-50x for SGD, 1-10x for AdamW.
SCHEDULEFREE = {"sgd": ("schedulefree", "schedule-free SGD", 10.0),
                "adamw": ("schedulefree_adamw", "schedule-free AdamW", 3.0)}
ONE_CYCLE_STANDARD = {"pct_start": 0.3, "div_factor": 25.0, "final_div_factor": 1e4}


@dataclasses.dataclass(frozen=True)
class Job:
    """One schedule to train: a candidate, a baseline, or one point of a baseline's LR sweep."""

    key: str  # hash of what is trained: the budget-free schedule and the optimizer
    label: str
    roles: tuple[str, ...]  # "candidate", "baseline", "sweep"
    schedule: schedules.ScheduleConfig
    optimizer: str = "sgd"  # "sgd": the study's own optimizer; else a schedule-free one
    source_trial: int | None = None
    lr_source: str = ""  # baselines: where their LR comes from
    lr_trial: int | None = None  # baselines: the searched trial that lent its LR
    slot: str = ""  # baselines and sweeps: which baseline (the same at every LR)


def _key(s: schedules.ScheduleConfig, optimizer: str) -> str:
    what = {**s.to_dict(), "optimizer": optimizer}
    return hashlib.sha1(json.dumps(what, sort_keys=True).encode()).hexdigest()[:12]


def job(label: str, roles: tuple[str, ...], s: schedules.ScheduleConfig, optimizer: str = "sgd",
         **more: Any) -> Job:
    return Job(_key(s, optimizer), label, roles, s, optimizer, **more)


# 1. Baselines, each with its LR tuned as the candidates' LRs were.


@dataclasses.dataclass(frozen=True)
class Baseline:
    slot: str
    label: str
    family: str  # the family it trains, whose searched trials can lend it an LR
    params: dict[str, Any]  # budget-free, as schedules.ScheduleConfig holds them
    optimizer: str = "sgd"
    lr_factor: float = 1.0  # its LR relative to an SGD-with-schedule LR (the sweep's centre)
    borrows: bool = True  # may take its LR from the study's trials of `family`

    def schedule(self, lr: float, knobs: dict[str, float]) -> schedules.ScheduleConfig:
        return schedules.ScheduleConfig(self.family, dict(self.params), **dict(knobs, lr=lr))


BASELINES = (  # the schedule-free one is added per study optimizer (`baselines`)
    Baseline("constant", "Constant", "Constant", {}),
    Baseline("cosine", "CosineAnnealingLR (whole run)", "CosineAnnealingLR",
             {"T_max": 1.0, "eta_min_factor": 0.0}),
    Baseline("onecycle", "OneCycleLR (standard)", "OneCycleLR", dict(ONE_CYCLE_STANDARD)),
    # airbench's schedule; "Straight to Zero" (ICLR 2025) finds it beats cosine-to-10%
    Baseline("linear0", "linear to zero", "PolynomialLR", {"power": 1.0}),
)
MIN_STUDY_TRIALS = 5  # finished trials of a family before the study's best LR is trusted
SWEEP_STEPS = (-2, -1, 0, 1, 2)  # sweep LRs: default_lr x 3 ** step
SWEEP_EXTEND = 2  # steps added past an edge of the sweep where the best LR sits there


def _knobs(cfg: Any) -> dict[str, float]:
    sp, base = cfg.space, schedules.ScheduleConfig("Constant")
    return {"momentum": sp.momentum.clip(base.momentum),
            "weight_decay": sp.weight_decay.clip(base.weight_decay), **space.standard_betas(sp)}


def baselines(cfg: Any) -> tuple[Baseline, ...]:
    """The baselines for this study: BASELINES, then the schedule-free variant of its
    optimizer (no schedule at all), at its own larger LR."""
    free_opt, free_label, factor = SCHEDULEFREE[getattr(cfg.train, "optimizer", "sgd")]
    return (*BASELINES, Baseline("schedulefree", free_label, "Constant", {}, free_opt, factor,
                                 borrows=False))


def _unavailable(cfg: Any, b: Baseline) -> str:
    """Why a baseline cannot run here ("" where it can)."""
    if b.optimizer == "sgd":  # the study's own optimizer
        return ""
    from search.config import DEFAULT_OBJECTIVE

    fields = {f.name for f in dataclasses.fields(cfg.train)}
    if cfg.objective != DEFAULT_OBJECTIVE or "optimizer" not in fields:
        return f"{b.label} baseline not run: the objective has no schedule-free optimizer"
    if importlib.util.find_spec("schedulefree") is None:
        return (f"{b.label} baseline not run: the `schedulefree` package is not installed "
                "(pip install schedulefree)")
    return ""


def sweep_lrs(cfg: Any, b: Baseline, steps: tuple[int, ...] = SWEEP_STEPS) -> list[float]:
    """Log-spaced LRs around the study's default LR (x3 apart): inside the study's LR range
    for SGD baselines, around its own larger default for schedule-free SGD."""
    sp = cfg.space
    out = set()
    for k in steps:
        lr = sp.default_lr * b.lr_factor * 3.0**k
        out.add(sp.lr.clip(lr) if b.optimizer == "sgd" else lr)
    return sorted(out)


def _study_lr(done: list[FrozenTrial], b: Baseline, epochs: int) -> FrozenTrial | None:
    """The best finished trial of the baseline's family at this budget, where the study has
    at least MIN_STUDY_TRIALS of them (`done` is best first)."""
    if not b.borrows:
        return None
    same = [t for t in done if t.params.get("scheduler") == b.family
            and int(t.user_attrs.get("epochs", -1)) == epochs]
    return same[0] if len(same) >= MIN_STUDY_TRIALS else None


@dataclasses.dataclass(frozen=True)
class Plan:
    jobs: list[Job]  # top-k distinct candidates, then the baselines whose LR is known
    epochs: int  # the length they are trained for
    searched_epochs: int  # the best searched trial's length
    notes: list[str]  # for the person: what was left out and why
    sweeps: list[Baseline] = dataclasses.field(default_factory=list)  # LRs still to tune
    knobs: dict[str, float] = dataclasses.field(default_factory=dict)


def plan(cfg: Any, study: optuna.Study, top: int, epochs: int | None = None) -> Plan:
    """What to validate: the top-k distinct schedules of `study` (exactly as their trials
    recorded them) and the baselines, at `epochs` (default: the best trial's length)."""
    from search.runner import schedule_of

    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.value is not None]
    done.sort(key=lambda t: (-t.value, t.number))
    if not done:
        raise UserError(f"study {study.study_name!r} has no complete trial to validate; run "
                        f"`python -m search run --study {study.study_name}` first")
    searched = int(done[0].user_attrs.get("epochs", cfg.epochs))
    target = epochs or searched
    jobs: dict[str, Job] = {}
    unrecorded = 0
    for t in done:
        if len(jobs) == top:
            break
        try:
            s = schedule_of(t)
        except UserError:  # recorded by an older schedsearch: nothing exact to re-train
            unrecorded += 1
            continue
        j = job(f"trial {t.number} {s.family}", ("candidate",), s, source_trial=t.number)
        jobs.setdefault(j.key, j)
    notes = [] if len(jobs) == top else [f"only {len(jobs)} distinct finished schedules"]
    if unrecorded:
        notes.append(f"{unrecorded} trials without a schedule record were skipped")
    knobs, sweeps = _knobs(cfg), []
    for b in baselines(cfg):
        why = _unavailable(cfg, b)
        if why:
            notes.append(why)
            continue
        src = _study_lr(done, b, searched)
        if src is None:
            sweeps.append(b)
            continue
        lr = float(src.user_attrs.get("optimizer", {}).get("lr", src.params.get("lr")))
        # what tuning the LR was worth: the best trial against the study's own default-LR run
        default = next((t for t in done if t.user_attrs.get("default")
                        and t.params.get("scheduler") == b.family), None)
        worth = (f", {src.value - default.value:+.4f} over the study's default-LR trial "
                 f"{default.number}" if default is not None else "")
        add_baseline(jobs, job(
            b.label, ("baseline",), b.schedule(lr, knobs), b.optimizer, slot=b.slot,
            lr_source=f"LR of the best of the study's {b.family} trials (trial {src.number})"
                      f"{worth}", lr_trial=src.number))
    return Plan(list(jobs.values()), target, searched, notes, sweeps, knobs)


def add_baseline(jobs: dict[str, Job], b: Job) -> None:
    if b.key in jobs:  # a searched schedule that is a baseline too: trained once, both roles
        j = jobs[b.key]
        jobs[b.key] = dataclasses.replace(
            j, roles=(*j.roles, "baseline"), label=f"{j.label} (= {b.label})",
            lr_source=b.lr_source, lr_trial=b.lr_trial, slot=b.slot)
    else:
        jobs[b.key] = b

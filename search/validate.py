"""`python -m search validate --study lr --top 5 --seeds 3`: is the winner really better?

Re-trains the study's top-k distinct schedules, exactly as their trials recorded them, and
tuned baselines (constant LR, CosineAnnealingLR over the whole run, OneCycleLR at standard
settings, linear decay to zero, and schedule-free SGD where the `schedulefree` package is
installed) on n new seeds, on the whole training data (train + validation carve), scored on
the held-out test split. Every schedule is resolved for that budget by `schedules.resolve`,
the same path `best` prints from, so what is validated is what `best --epochs E
--steps-per-epoch S` prints for that budget.

Baselines are tuned as the candidates were: a baseline takes the LR of the study's best
finished trial of its family where the study has MIN_STUDY_TRIALS of them at the same
budget; otherwise its LR is swept first (SWEEP_STEPS around the study's default LR, on the
validation split, the search's seed and budget). Results go to the companion study
`<study>.validate` in the same store: a second run skips every run already finished there,
and optuna-dashboard shows it like any study. `best` reads the companion (search.export).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.util
import json
import math
import sys
import time
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search import schedules
from search.errors import UserError

__all__ = ["BASELINES", "COMPANION_SUFFIX", "HELP", "SCHEDULEFREE", "SEED_BASE", "Baseline",
           "Job", "Plan", "add_arguments", "baselines", "companion_name", "main",
           "open_companion", "plan", "run", "sweep_lrs", "tune"]

HELP = "re-train the top schedules and baselines on new seeds, scored on the test set"
COMPANION_SUFFIX = ".validate"
SEED_BASE = 10_000  # validation seeds are SEED_BASE + i: never a seed the search trained with
# The study's optimizer -> its schedule-free variant (TrainConfig.optimizer), its label, and
# the LR factor over the scheduled LR: its authors suggest 10-50x for SGD, 1-10x for AdamW.
SCHEDULEFREE = {"sgd": ("schedulefree", "schedule-free SGD", 10.0),
                "adamw": ("schedulefree_adamw", "schedule-free AdamW", 3.0)}
ONE_CYCLE_STANDARD = {"pct_start": 0.3, "div_factor": 25.0, "final_div_factor": 1e4}


def companion_name(study_name: str) -> str:
    """The study holding the validation of `study_name`."""
    return study_name + COMPANION_SUFFIX


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


def _job(label: str, roles: tuple[str, ...], s: schedules.ScheduleConfig, optimizer: str = "sgd",
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


def _shared(spec: Any, default: float) -> float:
    return spec.low if spec.fixed else min(max(default, spec.low), spec.high)


def _knobs(cfg: Any) -> dict[str, float]:
    sp, base = cfg.space, schedules.ScheduleConfig("Constant")
    return {"momentum": _shared(sp.momentum, base.momentum),
            "weight_decay": _shared(sp.weight_decay, base.weight_decay)}


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
        out.add(min(max(lr, sp.lr.low), sp.lr.high) if b.optimizer == "sgd" else lr)
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
        job = _job(f"trial {t.number} {s.family}", ("candidate",), s, source_trial=t.number)
        jobs.setdefault(job.key, job)
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
        _add_baseline(jobs, _job(
            b.label, ("baseline",), b.schedule(lr, knobs), b.optimizer, slot=b.slot,
            lr_source=f"LR of the best of the study's {b.family} trials (trial {src.number})"
                      f"{worth}", lr_trial=src.number))
    return Plan(list(jobs.values()), target, searched, notes, sweeps, knobs)


def _add_baseline(jobs: dict[str, Job], b: Job) -> None:
    if b.key in jobs:  # a searched schedule that is a baseline too: trained once, both roles
        j = jobs[b.key]
        jobs[b.key] = dataclasses.replace(
            j, roles=(*j.roles, "baseline"), label=f"{j.label} (= {b.label})",
            lr_source=b.lr_source, lr_trial=b.lr_trial, slot=b.slot)
    else:
        jobs[b.key] = b


# 2. Training into the companion study.


def _objective(cfg: Any, jobs: dict[str, Job]) -> tuple[Any, type[Exception]]:
    """The Optuna objective: trains the run its (enqueued) trial names, on the split it names
    (the test split for the seeds, the validation split for LR sweeps)."""
    from search.config import load_objective
    from search.runner import (
        Recorder,
        TrialFailed,
        optimizer_name,
        record_optimizer,
        train_recorded,
    )

    func = load_objective(cfg.objective)

    def objective(trial: optuna.Trial) -> float:
        a = trial.user_attrs
        job = jobs.get(a.get("validate_key"))
        if job is None:  # queued by an older plan (other --top): not ours to train now
            raise TrialFailed("a queued run that is not part of this validation")
        s = job.schedule
        # the family and LR as params named like the search's, for optuna-dashboard (the enqueued
        # value; one allowed value each: recorded, not sampled); `schedule` holds the rest
        trial.suggest_categorical("scheduler", list(schedules.SCHEDULES))
        trial.suggest_float("lr", s.lr, s.lr)
        extra = {"optimizer": job.optimizer} if job.optimizer != "sgd" else {}
        train_cfg = dataclasses.replace(cfg.train, epochs=int(a["epochs"]), seed=int(a["seed"]),
                                        holdout=a.get("holdout", "test"), **extra)
        # what was asked for, until the objective builds its schedule on the real optimizer
        record_optimizer(trial, s, optimizer_name(train_cfg))
        rec = Recorder(trial)  # curves named val_*: measured on the split `holdout` names
        return train_recorded(func, train_cfg, s, rec)

    return objective, TrialFailed


def open_companion(store: optuna.storages.BaseStorage, searched: str) -> optuna.Study:
    """The companion study of `searched`, created on first use."""
    name = companion_name(searched)
    study = optuna.create_study(
        study_name=name, storage=store, direction="maximize", load_if_exists=True,
        sampler=optuna.samplers.RandomSampler(seed=0), pruner=optuna.pruners.NopPruner())
    if (study.directions != [optuna.study.StudyDirection.MAXIMIZE]
            or study.user_attrs.get("searched_study", searched) != searched):
        raise UserError(f"study {name!r} exists in this storage and is not the validation of "
                        f"{searched!r}; give the study another `name`")
    return study


Run = tuple[str, int, int, str]  # (key, seed, epochs, holdout)


def _runs(study: optuna.Study, states: tuple[TrialState, ...]) -> set[Run]:
    """(key, seed, epochs, holdout) of the runs in these states."""
    return {(t.user_attrs["validate_key"], int(t.user_attrs["seed"]),
             int(t.user_attrs["epochs"]), t.user_attrs.get("holdout", "test"))
            for t in study.get_trials(deepcopy=False, states=states)
            if "validate_key" in t.user_attrs}


# Done: complete, or stopped by a non-finite loss (it would only diverge again), or running
# now in another process (a dead one's trial fails after the heartbeat grace period).
# Failed and interrupted runs are trained again.
_DONE = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)


def _train(cfg: Any, study: optuna.Study, jobs: dict[str, Job], wanted: list[Run],
           searched: str, what: str, log: Any) -> None:
    """Train every wanted run not done yet, in order, into the companion study."""
    objective, failed = _objective(cfg, jobs)
    tried: set[Run] = set()  # a run that fails is tried once per invocation
    ran: list[FrozenTrial] = []  # what optimize finished: the oldest queued run, maybe not ours

    def keep(_: optuna.Study, trial: FrozenTrial) -> None:
        ran.append(trial)

    total = len(set(wanted) - _runs(study, _DONE))
    print(f"{what}: {len(set(wanted)) - total} runs done, {total} to train", file=log,
          flush=True)
    while True:
        done = _runs(study, _DONE)
        todo = [w for w in wanted if w not in done and w not in tried]
        if not todo:
            return
        if not _runs(study, (TrialState.WAITING,)) & set(todo):
            key, seed, epochs, holdout = todo[0]
            j = jobs[key]
            sweep = {"sweep_for": j.slot} if holdout == "val" else {}
            study.enqueue_trial({"scheduler": j.schedule.family}, user_attrs={
                "validate_key": key, "seed": seed, "epochs": epochs, "label": j.label,
                "roles": list(j.roles), "source_trial": j.source_trial, "holdout": holdout,
                "searched_study": searched, **sweep})
        start = time.monotonic()
        study.optimize(objective, n_trials=1, catch=(failed,), gc_after_trial=False,
                       callbacks=[keep])
        t = ran.pop()
        a = t.user_attrs
        tried.add((a.get("validate_key"), int(a.get("seed", -1)), int(a.get("epochs", -1)),
                   a.get("holdout", "test")))
        split = "val" if a.get("holdout") == "val" else "test"
        shown = (f"{split} acc {t.value:.4f}" if t.value is not None
                 else a.get("end_reason", t.state.name.lower()))
        job = jobs.get(a.get("validate_key"))
        lr = f" at LR {job.schedule.lr:.3g}" if job is not None and split == "val" else ""
        print(f"[{len(tried)}/{total}] {a.get('label')}{lr}, seed {a.get('seed')}: {shown} "
              f"({time.monotonic() - start:.0f} s)", file=log, flush=True)


def _scores(study: optuna.Study, jobs: dict[str, Job], epochs: int, seed: int) -> dict[str, float]:
    """Validation accuracy of each finished sweep run (one that diverged scores -inf)."""
    out: dict[str, float] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        a = t.user_attrs
        if (a.get("holdout") == "val" and a.get("validate_key") in jobs
                and int(a.get("epochs", -1)) == epochs and int(a.get("seed", -1)) == seed):
            out[a["validate_key"]] = float(t.value) if t.value is not None else -math.inf
    return out


def tune(cfg: Any, study: optuna.Study, the_plan: Plan, searched: str, log: Any) -> Plan:
    """Sweep the LR of every baseline the study cannot lend one, as the search scored its
    trials (validation split, the search's seed and budget), and add it at its best LR.

    The sweep is SWEEP_STEPS around the default LR; where the best LR sits at an edge that
    the study's LR range does not clip, up to SWEEP_EXTEND more steps go past it.
    """
    jobs = {j.key: j for j in the_plan.jobs}
    for b in the_plan.sweeps:
        steps, scored = SWEEP_STEPS, {}
        for _ in range(SWEEP_EXTEND + 1):
            points = {lr: _job(b.label, ("sweep",), b.schedule(lr, the_plan.knobs), b.optimizer,
                               slot=b.slot) for lr in sweep_lrs(cfg, b, steps)}
            sweep = {j.key: j for j in points.values()}
            _train(cfg, study, sweep, [(k, cfg.seed, the_plan.epochs, "val") for k in sweep],
                   searched, f"tuning the LR of {b.label} ({len(scored) + len(sweep)} LRs)", log)
            got = _scores(study, sweep, the_plan.epochs, cfg.seed)
            scored |= {lr: got.get(j.key, -math.inf) for lr, j in points.items()}
            best = max(scored, key=lambda lr: (scored[lr], -lr))
            low, high = min(scored), max(scored)
            if best == low and low > sweep_lrs(cfg, b, (min(steps) - 1,))[0]:
                steps = (min(steps) - 1,)  # the best is the lowest tried, and lower is allowed
            elif best == high and high < sweep_lrs(cfg, b, (max(steps) + 1,))[0]:
                steps = (max(steps) + 1,)
            else:
                break
        centre = cfg.space.default_lr * b.lr_factor
        default = min(scored, key=lambda lr: abs(math.log(lr / centre)))
        gain = scored[best] - scored[default]
        _add_baseline(jobs, _job(
            b.label, ("baseline",), b.schedule(best, the_plan.knobs), b.optimizer, slot=b.slot,
            lr_source=(f"sweep of {len(scored)} LRs on the validation split: {best:.3g}, "
                       f"{gain:+.4f} over the default {default:.3g}")))
    return dataclasses.replace(the_plan, jobs=list(jobs.values()), sweeps=[])


def run(
    cfg: Any, store: optuna.storages.BaseStorage, searched: str, the_plan: Plan,
    seeds: list[int], log: Any = None,
) -> optuna.Study:
    """Tune the baselines' LRs where needed, then train every (schedule, seed) run not done
    yet, seed by seed (an interrupted validation then already holds complete pairs), into the
    companion study; returns the companion."""
    log = log or sys.stderr
    study = open_companion(store, searched)
    optuna.storages.fail_stale_trials(study)  # a killed run's trial: trained again below
    the_plan = tune(cfg, study, the_plan, searched, log)
    attrs = {"searched_study": searched, "objective": cfg.objective, "holdout": "test",
             "dataset": getattr(cfg.train, "dataset", None), "notes": the_plan.notes,
             "searched_epochs": the_plan.searched_epochs}
    for j in the_plan.jobs:
        old = study.user_attrs.get(f"schedule.{j.key}", {})
        src = j.source_trial if j.source_trial is not None else old.get("source_trial")
        attrs[f"schedule.{j.key}"] = {"label": j.label, "family": j.schedule.family,
                                      "roles": sorted({*old.get("roles", ()), *j.roles}),
                                      "source_trial": src, "lr": j.schedule.lr,
                                      "lr_source": j.lr_source or old.get("lr_source", ""),
                                      "lr_trial": (j.lr_trial if j.lr_trial is not None
                                                   else old.get("lr_trial"))}
    for k, v in attrs.items():
        study.set_user_attr(k, v)
    jobs = {j.key: j for j in the_plan.jobs}
    wanted = [(j.key, s, the_plan.epochs, "test") for s in seeds for j in the_plan.jobs]
    _train(cfg, study, jobs, wanted, searched,
           f"validating {len(jobs)} schedules x {len(seeds)} seeds at {the_plan.epochs} epochs",
           log)
    return study


# 3. The command.


def add_arguments(p: argparse.ArgumentParser) -> None:
    from search.options import add_study_args, positive_int

    add_study_args(p)
    p.add_argument("--top", type=positive_int, default=5, metavar="K",
                   help="distinct schedules to validate, best first (default: 5)")
    p.add_argument("--seeds", type=positive_int, default=3, metavar="N",
                   help="new training seeds per schedule (default: 3)")
    p.add_argument("--epochs", type=positive_int, metavar="N",
                   help="train for N epochs, the schedules rescaled (default: as searched)")
    p.add_argument("--train-subset", type=positive_int, metavar="N",
                   help="as for run: the first N training examples (plus the val carve)")
    p.add_argument("--data-dir", help="where the data set lies (else $SEARCH_DATA_DIR, cache)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.epilog = (f"Results go to the study <name>{COMPANION_SUFFIX} in the same storage; "
                "running again trains only what is missing. Then: python -m search best.")


def main(args: argparse.Namespace) -> int:
    from search import export, storage
    from search.config import DEFAULT_OBJECTIVE
    from search.options import open_study

    cfg, searched = open_study(args)
    if cfg is None:
        raise UserError(f"validate needs the study file of {args.study!r} (its objective and "
                        "training settings); pass --study path/to/the.toml")
    if "holdout" not in {f.name for f in dataclasses.fields(cfg.train)}:
        raise UserError("this version of objectives.classify cannot score on the test split "
                        "(TrainConfig has no `holdout`)")
    # The settings the study was searched with (its identity: `run --epochs 2` and the like
    # included), then this command's own overrides.
    known = {f.name for f in dataclasses.fields(cfg.train)}
    stored = {k: tuple(v) if isinstance(v, list) else v
              for k, v in searched.user_attrs.get("identity", {}).items() if k in known}
    cfg = cfg.with_overrides(**stored).with_overrides(
        data_dir=args.data_dir, train_subset=args.train_subset, device=args.device)
    if cfg.objective == DEFAULT_OBJECTIVE:  # missing data: one line, before any training
        from objectives import data

        for split in ("train", "test"):
            data.load(cfg.train.dataset, split, cfg.train.data_dir)
    the_plan = plan(cfg, searched, args.top, args.epochs)
    url, w = storage.resolve(args.storage, cfg.storage), cfg.workers
    store = storage.open_storage(url, heartbeat_interval=w.heartbeat_interval,
                                 grace_period=w.grace_period)  # a killed run's trial is freed
    run(cfg, store, searched.study_name, the_plan, [SEED_BASE + i for i in range(args.seeds)])
    found = export.validation(searched, the_plan.epochs)
    print(f"study {companion_name(searched.study_name)!r} in {storage.redact(url)}")
    print("\n".join(found.lines()) if found else "nothing validated yet")
    return 0

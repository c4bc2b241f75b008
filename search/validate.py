"""`python -m search validate --study lr --top 5 --seeds 3`: is the winner really better?

Re-trains the study's top-k distinct schedules and the baselines (constant LR at the study's
best constant value, CosineAnnealingLR over the whole run, OneCycleLR at standard settings,
and schedule-free SGD where the `schedulefree` package is installed) on n new seeds, on the
whole training data, scored on the held-out test split. Results go to the companion study
`<study>.validate` in the same store: a second run skips every (schedule, seed, epochs) run
already finished there, and optuna-dashboard shows it like any study. `--epochs N` checks the
schedules rescaled to another training length. `best` reads the companion (search.export).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.util
import json
import sys
import time
import warnings
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search import schedules
from search.errors import UserError

__all__ = ["COMPANION_SUFFIX", "HELP", "SEED_BASE", "Job", "Plan", "add_arguments",
           "companion_name", "main", "open_companion", "plan", "rescaled", "run", "schedule_of"]

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
    """One schedule to validate, as trained (already at the validation length)."""

    key: str  # hash of what is trained: family, params, optimizer knobs, optimizer
    label: str
    roles: tuple[str, ...]  # "candidate", "baseline"
    schedule: schedules.ScheduleConfig
    optimizer: str = "sgd"  # "sgd": the study's own optimizer; else a schedule-free one
    source_trial: int | None = None


def _key(s: schedules.ScheduleConfig, optimizer: str) -> str:
    what = {"family": s.family, "params": dict(s.params), "lr": s.lr, "momentum": s.momentum,
            "weight_decay": s.weight_decay, "warmup_epochs": s.warmup_epochs,
            "optimizer": optimizer}
    return hashlib.sha1(json.dumps(what, sort_keys=True).encode()).hexdigest()[:12]


# 1. Schedules: rebuilt from stored trials, rescaled, and the baselines.


def schedule_of(trial: FrozenTrial, cfg: Any) -> schedules.ScheduleConfig:
    """The ScheduleConfig a searched trial trained with, rebuilt from its params."""
    epochs = int(trial.user_attrs.get("epochs", cfg.epochs))
    with warnings.catch_warnings():  # a study file edited since: out-of-range values stand
        warnings.simplefilter("ignore")
        from search import space

        s = space.suggest(optuna.trial.FixedTrial(trial.params), cfg.space, epochs)
    applied = trial.user_attrs.get("optimizer")  # what the optimizer got, where recorded
    if isinstance(applied, dict):
        s = dataclasses.replace(s, lr=float(applied["lr"]),  # AdamW records no momentum
                                momentum=float(applied.get("momentum", s.momentum)),
                                weight_decay=float(applied["weight_decay"]))
    return s


def rescaled(s: schedules.ScheduleConfig, old: int, new: int) -> schedules.ScheduleConfig:
    """The same schedule over `new` epochs: counts of epochs (and warmup) scale with the run;
    everything else in the search space is already a fraction of the run or a rate."""
    if old == new:
        return s
    params = dict(s.params)
    for p in schedules.family(s.family).params:
        if p.kind == "epochs" and p.name in params:
            params[p.name] = max(0 if p.low == 0 else 1, round(params[p.name] * new / old))
    return dataclasses.replace(s, params=params, warmup_epochs=s.warmup_epochs * new / old)


def _shared(spec: Any, default: float) -> float:
    return spec.low if spec.fixed else min(max(default, spec.low), spec.high)


def _baselines(cfg: Any, done: list[FrozenTrial], epochs: int) -> tuple[list[Job], list[str]]:
    sp = cfg.space
    base = schedules.ScheduleConfig("Constant")
    knobs = {"lr": _shared(sp.lr, sp.default_lr),
             "momentum": _shared(sp.momentum, base.momentum),
             "weight_decay": _shared(sp.weight_decay, base.weight_decay)}
    notes: list[str] = []
    constants = [t for t in done if t.params.get("scheduler") == "Constant"]
    if constants:  # best first already
        src = constants[0]
        const = dataclasses.replace(schedule_of(src, cfg), warmup_epochs=0.0)
        label = f"Constant (LR {const.lr:.3g} of trial {src.number})"
    else:
        const = schedules.ScheduleConfig("Constant", {}, **knobs)
        label = f"Constant (default LR {const.lr:.3g})"
    out = [
        (label, const, "sgd"),
        ("CosineAnnealingLR (whole run)",
         schedules.ScheduleConfig("CosineAnnealingLR", {"T_max": epochs, "eta_min_factor": 0.0},
                                  **knobs), "sgd"),
        ("OneCycleLR (standard)",
         schedules.ScheduleConfig("OneCycleLR", dict(ONE_CYCLE_STANDARD), **knobs), "sgd"),
    ]
    from search.config import DEFAULT_OBJECTIVE

    fields = {f.name for f in dataclasses.fields(cfg.train)}
    free_opt, free_label, factor = SCHEDULEFREE[getattr(cfg.train, "optimizer", "sgd")]
    if cfg.objective != DEFAULT_OBJECTIVE or "optimizer" not in fields:
        notes.append(f"{free_label} baseline not run: the objective has no schedule-free "
                     "optimizer")
    elif importlib.util.find_spec("schedulefree") is None:
        notes.append(f"{free_label} baseline not run: the `schedulefree` package is not "
                     "installed (pip install schedulefree)")
    else:
        free = dict(knobs, lr=knobs["lr"] * factor)
        out.append((free_label, schedules.ScheduleConfig("Constant", {}, **free), free_opt))
    return [Job(_key(s, o), lbl, ("baseline",), s, o) for lbl, s, o in out], notes


@dataclasses.dataclass(frozen=True)
class Plan:
    jobs: list[Job]  # top-k distinct candidates, then the baselines
    epochs: int  # the length they are trained for
    searched_epochs: int  # the best searched trial's length
    notes: list[str]  # for the person: what was left out and why


def plan(cfg: Any, study: optuna.Study, top: int, epochs: int | None = None) -> Plan:
    """What to validate: the top-k distinct schedules of `study` and the baselines, at
    `epochs` (default: the length the best trial was searched at)."""
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.value is not None]
    done.sort(key=lambda t: (-t.value, t.number))
    if not done:
        raise UserError(f"study {study.study_name!r} has no finished trial to validate; run "
                        f"`python -m search run --study {study.study_name}` first")
    searched = int(done[0].user_attrs.get("epochs", cfg.epochs))
    target = epochs or searched
    jobs: dict[str, Job] = {}
    for t in done:
        if len(jobs) == top:
            break
        try:
            s = rescaled(schedule_of(t, cfg), int(t.user_attrs.get("epochs", cfg.epochs)),
                         target)
        except (ValueError, KeyError):  # a trial from another version of the study file
            continue
        key = _key(s, "sgd")
        jobs.setdefault(key, Job(key, f"trial {t.number} {s.family}", ("candidate",), s,
                                 source_trial=t.number))
    notes = [] if len(jobs) == top else [f"only {len(jobs)} distinct finished schedules"]
    baselines, more = _baselines(cfg, done, target)
    for b in baselines:
        if b.key in jobs:  # a searched schedule that is a baseline too: train it once
            j = jobs[b.key]
            jobs[b.key] = dataclasses.replace(j, roles=(*j.roles, "baseline"),
                                              label=f"{j.label} (= {b.label})")
        else:
            jobs[b.key] = b
    return Plan(list(jobs.values()), target, searched, notes + more)


# 2. Training into the companion study.


def _record_params(trial: optuna.Trial, s: schedules.ScheduleConfig) -> None:
    """The trained schedule as params named like the search's (`scheduler` was enqueued)."""
    trial.suggest_categorical("scheduler", list(schedules.SCHEDULES))
    named = {f"{s.family}.{k}": v for k, v in s.params.items()}
    named |= {"lr": s.lr, "momentum": s.momentum, "weight_decay": s.weight_decay,
              "warmup_epochs": s.warmup_epochs}
    for name, v in named.items():  # one allowed value each: recorded, not sampled
        if isinstance(v, int) and not isinstance(v, bool):
            trial.suggest_int(name, v, v)
        else:
            trial.suggest_float(name, float(v), float(v))


def _objective(cfg: Any, jobs: dict[str, Job]) -> tuple[Any, type[Exception]]:
    """The Optuna objective: trains the run its (enqueued) trial names, on the test split."""
    from objectives.classify import OPTIMIZERS
    from search.config import load_objective
    from search.runner import Recorder, TrialFailed, record_optimizer, train_recorded

    func = load_objective(cfg.objective)

    def objective(trial: optuna.Trial) -> float:
        a = trial.user_attrs
        job = jobs.get(a.get("validate_key"))
        if job is None:  # queued by an older plan (other --top): not ours to train now
            raise TrialFailed("a queued run that is not part of this validation")
        s = job.schedule
        _record_params(trial, s)
        extra = {"optimizer": job.optimizer} if job.optimizer != "sgd" else {}
        train_cfg = dataclasses.replace(cfg.train, epochs=int(a["epochs"]), seed=int(a["seed"]),
                                        holdout="test", **extra)
        record_optimizer(trial, s, OPTIMIZERS[train_cfg.optimizer][1])
        rec = Recorder(trial)  # curves named val_*: here they are measured on the test split
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


def _runs(study: optuna.Study, states: tuple[TrialState, ...]) -> set[tuple[str, int, int]]:
    """(key, seed, epochs) of the validation runs in these states."""
    return {(t.user_attrs["validate_key"], int(t.user_attrs["seed"]),
             int(t.user_attrs["epochs"]))
            for t in study.get_trials(deepcopy=False, states=states)
            if "validate_key" in t.user_attrs}


# Done: complete, or stopped by a non-finite loss (it would only diverge again), or running
# now in another process (a dead one's trial fails after the heartbeat grace period).
# Failed and interrupted runs are trained again.
_DONE = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)


def run(
    cfg: Any, store: optuna.storages.BaseStorage, searched: str, the_plan: Plan,
    seeds: list[int], log: Any = None,
) -> optuna.Study:
    """Train every (schedule, seed) run not done yet, seed by seed (an interrupted validation
    then already holds complete pairs), into the companion study; returns the companion."""
    log = log or sys.stderr
    study = open_companion(store, searched)
    optuna.storages.fail_stale_trials(study)  # a killed run's trial: trained again below
    attrs = {"searched_study": searched, "objective": cfg.objective, "holdout": "test",
             "dataset": getattr(cfg.train, "dataset", None), "notes": the_plan.notes,
             "searched_epochs": the_plan.searched_epochs}
    for j in the_plan.jobs:
        old = study.user_attrs.get(f"schedule.{j.key}", {})
        src = j.source_trial if j.source_trial is not None else old.get("source_trial")
        attrs[f"schedule.{j.key}"] = {"label": j.label, "family": j.schedule.family,
                                      "roles": sorted({*old.get("roles", ()), *j.roles}),
                                      "source_trial": src}
    for k, v in attrs.items():
        study.set_user_attr(k, v)
    jobs = {j.key: j for j in the_plan.jobs}
    objective, failed = _objective(cfg, jobs)
    wanted = [(j.key, s, the_plan.epochs) for s in seeds for j in the_plan.jobs]
    tried: set[tuple[str, int, int]] = set()  # a run that fails is tried once per invocation
    ran: list[FrozenTrial] = []  # what optimize finished: the oldest queued run, maybe not ours

    def keep(_: optuna.Study, trial: FrozenTrial) -> None:
        ran.append(trial)

    total = len(set(wanted) - _runs(study, _DONE))
    print(f"validating {len(jobs)} schedules x {len(seeds)} seeds at {the_plan.epochs} "
          f"epochs: {len(wanted) - total} runs done, {total} to train", file=log, flush=True)
    while True:
        done = _runs(study, _DONE)
        todo = [w for w in wanted if w not in done and w not in tried]
        if not todo:
            return study
        if not _runs(study, (TrialState.WAITING,)) & set(todo):
            key, seed, epochs = todo[0]
            study.enqueue_trial({"scheduler": jobs[key].schedule.family}, user_attrs={
                "validate_key": key, "seed": seed, "epochs": epochs, "label": jobs[key].label,
                "roles": list(jobs[key].roles), "source_trial": jobs[key].source_trial,
                "holdout": "test", "searched_study": searched})
        start = time.monotonic()
        study.optimize(objective, n_trials=1, catch=(failed,), gc_after_trial=False,
                       callbacks=[keep])
        t = ran.pop()
        a = t.user_attrs
        tried.add((a.get("validate_key"), int(a.get("seed", -1)), int(a.get("epochs", -1))))
        shown = (f"test acc {t.value:.4f}" if t.value is not None
                 else a.get("end_reason", t.state.name.lower()))
        print(f"[{len(tried)}/{total}] {a.get('label')}, seed {a.get('seed')}: {shown} "
              f"({time.monotonic() - start:.0f} s)", file=log, flush=True)


# 3. The command.


def add_arguments(p: argparse.ArgumentParser) -> None:
    from search.cli import add_study_args, positive_int

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
    from search.cli import open_study
    from search.config import DEFAULT_OBJECTIVE

    cfg, searched = open_study(args)
    if cfg is None:
        raise UserError(f"validate needs the study file of {args.study!r} (its objective and "
                        "training settings); pass --study path/to/the.toml")
    if "holdout" not in {f.name for f in dataclasses.fields(cfg.train)}:
        raise UserError("this version of objectives.classify cannot score on the test split "
                        "(TrainConfig has no `holdout`)")
    cfg = cfg.with_overrides(data_dir=args.data_dir, train_subset=args.train_subset,
                             device=args.device)
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

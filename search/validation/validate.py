"""`python -m search validate --study lr --top 5 --seeds 3`: is the winner really better?

Re-trains the study's top-k distinct schedules, exactly as their trials recorded them, and
tuned baselines (constant LR, CosineAnnealingLR over the whole run, OneCycleLR at standard
settings, linear decay to zero, and schedule-free SGD where the `schedulefree` package is
installed) on n new seeds, on the whole training data (train + validation carve), scored on
the held-out test split. Every schedule is resolved for that budget by `schedules.resolve`,
the same path `best` prints from, so what is validated is what `best --epochs E
--steps-per-epoch S` prints for that budget.

What is trained, and how baselines are tuned: `search.validation.plan`. Every run trains
through the engine's claim protocol (search.engine.claim): runs are claimed under the study's
lock, so `--jobs N` worker processes share the work and nothing trains twice; SIGTERM ends
the run in flight as `interrupted` and exits 0, Ctrl-C exits 130. Results go to the companion
study `<study>.validate` in the same store: a second run trains exactly what is missing, and
optuna-dashboard shows it like any study. `best` reads the companion (search.answer).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search import record, storage
from search.config import StudyConfig
from search.contest.contenders import lr_clip, next_lrs
from search.engine import claim, sequential, workers
from search.engine.signals import Signals
from search.errors import UserError
from search.goal import DEFAULT, Goal
from search.validation.plan import (
    COMPANION_SUFFIX,
    SWEEP_STEPS,
    Job,
    ValidationPlan,
    add_baseline,
    companion_name,
    job,
    plan,
    plan_work,
    sweep_lrs,
)

__all__ = ["COMPANION_SUFFIX", "HELP", "SEED_BASE", "add_arguments", "companion_name", "main",
           "open_companion", "plan", "run", "tune", "work"]

HELP = "re-train the top schedules and baselines on new seeds, scored on the test set"
SEED_BASE = 10_000  # validation seeds are SEED_BASE + i: never a seed the search trained with


# 2. Training into the companion study.


def _objective(cfg: StudyConfig) -> Any:
    """The Optuna objective: a fixed run (search.runner.fixed_run) of the schedule, seed,
    length and split (the test split for the seeds, the validation split for LR sweeps) its
    queued trial names."""
    from search.runner import make_objective

    return make_objective(cfg)


def open_companion(store: optuna.storages.BaseStorage, searched: str,
                   goal: Goal = DEFAULT) -> optuna.Study:
    """The companion study of `searched` (which optimises `goal`), created on first use."""
    name = companion_name(searched)
    study = optuna.create_study(
        study_name=name, storage=store, load_if_exists=True,
        direction=goal.direction,  # type: ignore[arg-type]  # one of DIRECTIONS
        sampler=optuna.samplers.RandomSampler(seed=0), pruner=optuna.pruners.NopPruner())
    if (not goal.holds(study)
            or record.study_of(study).get(record.Study.SEARCHED_STUDY, searched) != searched):
        raise UserError(f"study {name!r} exists in this storage and is not the validation of "
                        f"{searched!r}; give the study another `name`")
    return study


RunKey = tuple[str, int, int, str]  # (key, seed, epochs, holdout)


def _run(t: FrozenTrial) -> RunKey | None:
    r = record.of(t)
    if r.validate_key is None or r.seed is None or r.epochs is None:
        return None
    return (r.validate_key, r.seed, r.epochs, r.holdout)


def _runs(study: optuna.Study, states: tuple[TrialState, ...]) -> set[RunKey]:
    """(key, seed, epochs, holdout) of the runs in these states."""
    return {r for t in study.get_trials(deepcopy=False, states=states)
            if (r := _run(t)) is not None}


# Done: complete, or stopped by a non-finite loss (it would only diverge again), or running
# now in another process (a dead one's trial fails after the heartbeat grace period).
# Failed and interrupted runs are trained again.
_DONE = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)


class _Runs:
    """The claim policy of a validation: the wanted runs not done yet, in order (a
    claim.ClaimPolicy, structurally).

    Done: complete, pruned, or running now in another worker. A run this worker tried and
    that failed is not tried again in this invocation. While only other workers' runs are
    left, wait for them (a dead worker's run fails after the grace period and is due again).
    """

    def __init__(self, jobs: dict[str, Job], wanted: list[RunKey], searched: str) -> None:
        self.jobs, self.runs, self.searched = jobs, wanted, searched
        self.tried: set[RunKey] = set()
        self.todo: list[RunKey] = []

    def __call__(self, study: optuna.Study, live: bool) -> str | None:
        done = _runs(study, _DONE)
        self.todo = [w for w in self.runs if w not in done and w not in self.tried]
        if self.todo:
            return None
        others = _runs(study, (TrialState.RUNNING,)) & (set(self.runs) - self.tried)
        return claim.WAIT if live and others else claim.DONE

    def wanted(self, trial: FrozenTrial) -> bool:
        """A queued run is taken where it is one of the runs to do (claim.take_queued fails
        the others queued ahead of it: an older plan's)."""
        return _run(trial) in self.todo

    def next_run(self) -> record.Enqueued:
        """The first run to do."""
        key, seed, epochs, holdout = self.todo[0]
        j = self.jobs[key]
        return record.Enqueued(
            schedule=j.schedule.to_dict(), optimizer_name=j.optimizer or None,
            validate_key=key, seed=seed, epochs=epochs, label=j.label, roles=tuple(j.roles),
            source_trial=j.source_trial, holdout=holdout, searched_study=self.searched,
            sweep_for=j.slot if holdout == "val" else None)


def _train(cfg: StudyConfig, study: optuna.Study, jobs: dict[str, Job], wanted: list[RunKey],
           searched: str, what: str, out: Any, sig: Signals) -> None:
    """Train every wanted run not done yet, in order, into the companion study."""
    objective = _objective(cfg)
    runs = _Runs(jobs, wanted, searched)
    total = len(set(wanted) - _runs(study, _DONE))
    print(f"{what}: {len(set(wanted)) - total} runs done, {total} to train", file=out,
          flush=True)
    started = [time.monotonic()]

    def timed(trial: optuna.Trial) -> float:
        started[0] = time.monotonic()
        return objective(trial)

    def shown(_: optuna.Study, t: FrozenTrial) -> None:
        r = record.of(t)
        split = r.holdout
        runs.tried.add((r.validate_key, r.seed if r.seed is not None else -1,
                        r.epochs if r.epochs is not None else -1, split))
        result = (f"{cfg.goal.metric} on {split} {t.value:.4f}" if t.value is not None
                  else r.end_reason or t.state.name.lower())
        j = jobs.get(r.validate_key) if r.validate_key is not None else None
        lr = f" at LR {j.schedule.lr:.3g}" if j is not None and split == "val" else ""
        print(f"[{len(runs.tried)}/{total}] {r.label}{lr}, seed {r.seed}: "
              f"{result} ({time.monotonic() - started[0]:.0f} s)", file=out, flush=True)

    sequential.loop(study, timed, runs, sig, cfg.workers.grace_period, shown)


def _scores(study: optuna.Study, jobs: dict[str, Job], epochs: int, seed: int,
            goal: Goal) -> dict[str, float]:
    """The score (search.goal) of each finished sweep run on the validation split (one that
    diverged scores -inf)."""
    out: dict[str, float] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        r = record.of(t)
        if (r.holdout == "val" and r.validate_key in jobs and r.epochs == epochs
                and r.seed == seed):
            out[r.validate_key] = goal.score(t.value) if t.value is not None else -math.inf
    return out


def tune(cfg: StudyConfig, study: optuna.Study, the_plan: ValidationPlan, searched: str, out: Any,
         sig: Signals) -> ValidationPlan:
    """Sweep the LR of every baseline the study cannot lend one, as the search scored its
    trials (validation split, the search's training seed and budget), and add it at its best
    LR: the contest's grid rule (plan.SWEEP_STEPS around the default LR, extended
    past an edge where the best LR sits there and the study's LR range allows)."""
    jobs = {j.key: j for j in the_plan.jobs}
    seed = cfg.train.seed
    first = SWEEP_STEPS
    for b in the_plan.sweeps:
        scored: dict[float, float] = {}  # LR -> its score
        steps, tried = first, set(first)
        centre = cfg.space.default_lr * b.lr_factor
        clip = lr_clip(cfg, b)
        while True:
            points = {lr: job(b.label, ("sweep",), b.schedule(lr, the_plan.knobs), b.optimizer,
                              slot=b.slot) for lr in sweep_lrs(cfg, b, steps)}
            sweep = {j.key: j for j in points.values()}
            _train(cfg, study, sweep, [(k, seed, the_plan.epochs, "val") for k in sweep],
                   searched, f"tuning the LR of {b.label} ({len(scored) + len(sweep)} LRs)",
                   out, sig)
            if sig.received is not None:
                return the_plan
            got = _scores(study, sweep, the_plan.epochs, seed, cfg.goal)
            scored |= {lr: got.get(j.key, -math.inf) for lr, j in points.items()}
            tried |= set(steps)
            steps = next_lrs(scored, centre, clip, first, tuple(sorted(tried)))
            if not steps:
                break
        best = max(scored, key=lambda lr: (scored[lr], -lr))
        default = min(scored, key=lambda lr: abs(math.log(lr / centre)))
        gain = scored[best] - scored[default]
        add_baseline(jobs, job(
            b.label, ("baseline",), b.schedule(best, the_plan.knobs), b.optimizer, slot=b.slot,
            lr_source=(f"sweep of {len(scored)} LRs on the validation split: {best:.3g}, "
                       f"{cfg.goal.gap(gain, signed=True)} over the default {default:.3g}")))
    return dataclasses.replace(the_plan, jobs=list(jobs.values()), sweeps=[])


def run(
    cfg: StudyConfig, store: optuna.storages.BaseStorage, searched: str, the_plan: ValidationPlan,
    seeds: list[int], out: Any = None,
) -> optuna.Study:
    """Tune the baselines' LRs where needed, then train every (schedule, seed) run not done
    yet, seed by seed (an interrupted validation then already holds complete pairs), into the
    companion study; returns the companion. SIGTERM ends the run in flight as `interrupted`
    and returns; Ctrl-C does the same and raises KeyboardInterrupt."""
    out = out or sys.stderr

    def body(e: claim.Entry) -> None:
        study = e.study
        assert study is not None  # claim.enter opens it before the body runs
        tuned = tune(cfg, study, the_plan, searched, out, e.sig)
        if e.sig.received is not None:
            return
        _describe(study, cfg, searched, tuned)
        jobs = {j.key: j for j in tuned.jobs}
        wanted = [(j.key, s, tuned.epochs, "test") for s in seeds for j in tuned.jobs]
        _train(cfg, study, jobs, wanted, searched,
               f"validating {len(jobs)} schedules x {len(seeds)} seeds at {tuned.epochs} "
               "epochs", out, e.sig)

    entry = claim.enter(store, cfg.workers, lambda s: open_companion(s, searched, cfg.goal),
                        body)
    return entry.study or open_companion(entry.store, searched, cfg.goal)


def _describe(study: optuna.Study, cfg: StudyConfig, searched: str,
              the_plan: ValidationPlan) -> None:
    """What the companion study validates, in its user attributes (for `best`, dashboards)."""
    keys = record.Study
    attrs = {keys.SEARCHED_STUDY: searched, keys.OBJECTIVE: cfg.objective, keys.HOLDOUT: "test",
             keys.DATASET: cfg.train.dataset, keys.NOTES: the_plan.notes,
             keys.SEARCHED_EPOCHS: the_plan.searched_epochs}
    for k, v in attrs.items():
        record.set_study(study, k, v)
    known = record.validated(study)
    for j in the_plan.jobs:
        old = known.get(j.key, record.Validated())
        record.set_validated(study, j.key, record.Validated(
            label=j.label, family=j.schedule.family, roles=tuple({*old.roles, *j.roles}),
            source_trial=j.source_trial if j.source_trial is not None else old.source_trial,
            lr=j.schedule.lr, lr_source=j.lr_source or old.lr_source,
            lr_trial=j.lr_trial if j.lr_trial is not None else old.lr_trial))


def _held(searched: optuna.Study) -> set[RunKey]:
    """The runs the companion study already holds (none where it does not exist yet)."""
    from search import compat

    try:
        comp = optuna.load_study(study_name=companion_name(searched.study_name),
                                 storage=compat.storage_of(searched))
    except KeyError:
        return set()
    return _runs(comp, _DONE)


def _span(least: float, most: float, show: Any = str) -> str:
    return show(least) if show(least) == show(most) else f"{show(least)}-{show(most)}"


def _plan_line(cfg: StudyConfig, searched: optuna.Study, the_plan: ValidationPlan,
               seeds: list[int], jobs: int) -> str:
    """What validate will train, run by run (plan.plan_work: the sweeps' first
    points, the points they may add past an edge stated as such, every schedule on every
    seed), less what the companion study already holds, and how long it takes at the search's
    measured pace by the rule of search.pace (a test run trains on the validation carve too:
    1 / (1 - val_fraction) more steps an epoch)."""
    from search import pace
    from search.progress import duration

    scale = 1.0 / (1.0 - float(cfg.train.val_fraction or 0.0))
    fresh = plan_work(cfg, the_plan, seeds, scale)
    left = plan_work(cfg, the_plan, seeds, scale, _held(searched))
    e, n_sweeps = the_plan.epochs, len(the_plan.sweeps)
    tests = (fresh.least.stages[-1].runs, fresh.most.stages[-1].runs)
    what = f"{len(the_plan.jobs)} schedules" + (
        f" + {n_sweeps} baselines at the LR their sweeps find" if n_sweeps else "")
    line = f"validate plan: {what} x {len(seeds)} seeds at {e} epochs ({_span(*tests)} runs"
    line += ", fewer where a swept baseline is one of the schedules)" if (
        tests[0] != tests[1]) else ")"
    if n_sweeps:
        first = fresh.least.runs - tests[0]
        more = fresh.most.runs - tests[1] - first
        line += (f", after LR sweeps of {n_sweeps} baselines ({first} runs"
                 + (f", and up to {more} more where a best LR sits on a grid's edge"
                    if more else "") + ")")
    low, high = fresh.runs()
    line += f": {_span(low, high)} runs, {_span(low * e, high * e)} epochs"
    if left.runs() != fresh.runs():
        line += (f" ({_span(*left.runs())} to train: the companion study holds "
                 f"{high - left.most.runs} of them)")
    measured = pace.measure(searched.get_trials(deepcopy=False))
    if measured is None:
        return line + "; no finished trial to time it by"
    secs = [pace.work_seconds(w, measured, jobs) for w in (left.least, left.most)]
    return (line + f"; about {_span(secs[0], secs[1], show=duration)} at the search's pace "
            f"({measured.seconds_per_epoch:.2g} s an epoch"
            + (f", {measured.seconds_per_trial:.2g} s to start a run"
               if measured.seconds_per_trial else "") + ")")


def work(cfg: StudyConfig, url: str, searched: str, the_plan: ValidationPlan, seeds: list[int],
         share: int = 1) -> None:
    """One worker process of `validate --jobs`: the whole validation, shared through the
    claim protocol with the other workers."""
    run(cfg, claim.open_for(cfg.workers, url, retry_stale=False), searched, the_plan, seeds)


# 3. The command.


def add_arguments(p: argparse.ArgumentParser) -> None:
    from search.options import add_study_args, positive_int

    add_study_args(p)
    p.add_argument("--top", type=positive_int, default=5, metavar="K",
                   help="distinct schedules to validate, best first (default: 5)")
    p.add_argument("--seeds", type=positive_int, default=3, metavar="N",
                   help="new training seeds per schedule (default: 3)")
    p.add_argument("--epochs", type=positive_int, metavar="N",
                   help="train for N epochs, the schedules rescaled and, in a contest "
                        "searched at several horizons, each LR moved by its LR law, as `best "
                        "--epochs N` prints it (default: as searched)")
    p.add_argument("--keep-lr", action="store_true",
                   help="with --epochs: keep the LRs searched (as `best --keep-lr`)")
    p.add_argument("--train-subset", type=positive_int, metavar="N",
                   help="as for run: the first N training examples (plus the val carve)")
    p.add_argument("--data-dir", help="where the data set lies (else $SEARCH_DATA_DIR, cache)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--jobs", type=positive_int, default=1, metavar="N",
                   help="worker processes sharing the runs (spread over the GPUs)")
    p.epilog = (f"Results go to the study <name>{COMPANION_SUFFIX} in the same storage; "
                "running again trains only what is missing; `best` with the same --study and "
                "--storage then shows the test accuracy.")


def main(args: argparse.Namespace) -> int:
    from search.answer.text import validation_lines
    from search.config import DEFAULT_OBJECTIVE, check_holdout
    from search.options import open_study
    from search.validation.companion import validation

    cfg, searched = open_study(args)
    if cfg is None:
        raise UserError(f"validate needs the study file of {args.study!r} (its objective and "
                        "training settings); pass --study path/to/the.toml")
    # The settings the study was searched with (its identity: `run --epochs 2` and the like
    # included), then this command's own overrides.
    known = {f.name for f in dataclasses.fields(cfg.train)}
    stored = {k: tuple(v) if isinstance(v, list) else v
              for k, v in record.study_of(searched).get(record.Study.IDENTITY, {}).items()
              if k in known}
    cfg = cfg.with_overrides(**stored).with_overrides(
        data_dir=args.data_dir, train_subset=args.train_subset, device=args.device)
    check_holdout(cfg)  # its "test" scores are the test split's, or one line and nothing runs
    if cfg.objective == DEFAULT_OBJECTIVE:  # missing data: one line, before any training
        from objectives import data

        for split in ("train", "test"):
            data.load(cfg.train.dataset, split, cfg.train.data_dir)
    else:  # a user's or a framework's objective: its own checks (search.runner.prepare)
        from search.runner import prepare

        prepare(cfg)
    the_plan = plan(cfg, searched, args.top, args.epochs, args.keep_lr)
    url = storage.resolve_url(args.storage, cfg.storage)
    seeds = [SEED_BASE + i for i in range(args.seeds)]
    print(_plan_line(cfg, searched, the_plan, seeds, args.jobs), file=sys.stderr,
          flush=True)
    code = 0
    if args.jobs > 1:
        gpus = workers.gpu_plan(args.jobs, args.jobs,
                                workers.visible_gpus(cfg.train.device))
        store = claim.open_for(cfg.workers, url, retry_stale=False)
        open_companion(store, searched.study_name, cfg.goal)  # once, before the workers start
        with Signals(store) as sig:
            codes = workers.supervise(work, (cfg, url, searched.study_name, the_plan, seeds),
                                      args.jobs, gpus, sig)
        if sig.received is not None and not sig.terminated:
            raise KeyboardInterrupt
        code = 0 if sig.terminated else workers.exit_code(codes)
    else:  # heartbeats: a killed run's trial is freed after the grace period
        run(cfg, claim.open_for(cfg.workers, url, retry_stale=False), searched.study_name,
            the_plan, seeds)
    found = validation(searched, the_plan.epochs)
    print(f"study {companion_name(searched.study_name)!r} in {storage.redact(url)}")
    print("\n".join(validation_lines(found)) if found else "nothing validated yet")
    return code

"""Sampler, pruner and study wiring; adapts objectives (which never import optuna) to trials.

One trial: `space.suggest` -> ScheduleConfig -> `objective(cfg.train, schedule, report)`.
`report` records the curves on the trial, reports the validation accuracy for pruning, and
raises TrialPruned; a non-finite loss ends the trial at once as pruned with its reason.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from objectives import Diverged
from objectives.optimizers import by_class, nesterov
from search import compat, record, schedules, space
from search.config import StudyConfig, load_objective
from search.errors import UserError
from search.goal import ACCURACY, DEFAULT

__all__ = [
    "DONE",
    "WAIT",
    "fixed_run",
    "identity",
    "Recorder",
    "TrialFailed",
    "create_or_load",
    "is_oom",
    "make_objective",
    "make_pruner",
    "make_sampler",
    "prepare",
    "optimizer_name",
    "record_optimizer",
    "setup",
    "train_recorded",
]

# What a claim policy answers when no trial is due (search.engine.claim): the loop ends, or
# it waits for trials running elsewhere.
DONE, WAIT = "done", "wait"


def _sampled(t: Any) -> bool:
    return not record.of(t).is_fixed


class TrialFailed(Exception):
    """A trial that cannot finish for a reason worth recording (out of memory)."""


def make_sampler(cfg: StudyConfig, worker: int = 0) -> optuna.samplers.BaseSampler:
    """The study's sampler; in a contest it sees the sampled shape trials only."""
    base = _sampler(cfg, worker)
    return base if cfg.contest is None else SampledOnly(base)


class SampledOnly(optuna.samplers.BaseSampler):
    """A sampler that learns from sampled trials only: a contest's fixed runs (references,
    race runs; nothing of them is sampled) would otherwise fill TPE's startup count and its
    good/bad split with trials that carry none of the parameters it models."""

    def __init__(self, base: optuna.samplers.BaseSampler) -> None:
        self.base = base

    @staticmethod
    def _view(study: optuna.Study) -> Any:
        return compat.TrialsView(study, _sampled)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial
                                    ) -> dict[str, BaseDistribution]:
        return self.base.infer_relative_search_space(self._view(study), trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return self.base.sample_relative(self._view(study), trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self.base.sample_independent(self._view(study), trial, param_name,
                                            param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.base.before_trial(self._view(study), trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self.base.after_trial(self._view(study), trial, state, values)

    def reseed_rng(self) -> None:
        self.base.reseed_rng()


def _sampler(cfg: StudyConfig, worker: int) -> optuna.samplers.BaseSampler:
    # Each worker gets its own stream of suggestions; worker 0 reproduces a one-process run.
    seed = cfg.seed + 7919 * worker
    if cfg.sampler.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(
        seed=seed,
        n_startup_trials=cfg.sampler.n_startup_trials,
        multivariate=cfg.sampler.multivariate,
        group=cfg.sampler.group,  # conditional space: one model per family's parameter group
        constant_liar=True,  # concurrent workers don't all sample the same point
    )


def make_pruner(cfg: StudyConfig) -> optuna.pruners.BasePruner:
    """The study's pruner; in a contest it compares a shape with sampled shapes only."""
    base = _pruner(cfg)
    return base if cfg.contest is None else SampledOnlyPruner(base)


class SampledOnlyPruner(optuna.pruners.BasePruner):
    """A pruner that compares with sampled trials only: a contest's fixed runs include whole
    runs of a shorter horizon, whose accuracy at their last epoch (the LR decayed) is no
    measure of a longer run at that epoch. (Hyperband compares the trials that reached its
    rungs, which fixed runs never do: they are never pruned.)"""

    def __init__(self, base: optuna.pruners.BasePruner) -> None:
        self.base = base

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        # a TrialsView is the study, its trials filtered (compat.TrialsView)
        return self.base.prune(compat.TrialsView(study, _sampled),  # type: ignore[arg-type]
                               trial)


def _pruner(cfg: StudyConfig) -> optuna.pruners.BasePruner:
    p = cfg.pruner
    if p.name == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps
        )
    if p.name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=p.min_resource,
            max_resource=cfg.epochs,  # resource = epochs reported
            reduction_factor=p.reduction_factor,
        )
    return optuna.pruners.NopPruner()


# What a study remembers of the settings that created it: everything that changes what its
# values mean. Where to read data, which device, and the sampler seed do not.
NOT_IDENTITY = ("data_dir", "device", "seed", "holdout", "final_test")


def identity(cfg: StudyConfig) -> dict[str, Any]:
    """The settings that give a study's values their meaning, as JSON-able values."""
    out: dict[str, Any] = {"objective": cfg.objective}
    train = cfg.train
    if dataclasses.is_dataclass(train):
        for f in dataclasses.fields(train):
            if f.name not in NOT_IDENTITY:
                v = getattr(train, f.name)
                out[f.name] = list(v) if isinstance(v, tuple) else (
                    dict(v) if isinstance(v, Mapping) else v)
    if cfg.contest is not None:  # how the answer is chosen changes what the trials mean
        c = cfg.contest
        out["contest"] = {"shape_trials": c.shape_trials, "finalists": c.finalists,
                          "max_seeds": c.max_seeds, "noise_sd": c.noise_sd,
                          "lr_factor": [c.lr_factor.low, c.lr_factor.high, c.lr_factor.log]}
        if c.horizons:  # absent without: studies from before horizons keep their identity
            out["contest"]["horizons"] = list(c.lengths(cfg.epochs))
        # the references step per optimizer step (schedules.stepped_per_step); a study from
        # before, whose references stepped per epoch, cannot mix its grids with these
        out["contest"]["references_step"] = "optimizer step"
        out["contest"]["equivalence"] = c.equivalence  # the race's practical margin δ
        if c.references:  # absent: the default set, as every study before the key had
            out["contest"]["references"] = list(c.references)
    return out


def _check_identity(study: optuna.Study, cfg: StudyConfig) -> None:
    stored, keys = record.study_of(study), record.Study
    mine = identity(cfg)
    if keys.IDENTITY in stored:
        # a study from before goals: what it optimised is all it could have been
        theirs = {"metric": DEFAULT.metric, "direction": DEFAULT.direction,
                  **stored[keys.IDENTITY]}
    else:  # a study created before identities were recorded: what it did record
        theirs = {k: stored[k] for k in (keys.OBJECTIVE, keys.DATASET, keys.EPOCHS)
                  if k in stored}
    if "contest" in mine and "contest" not in theirs:
        raise UserError(
            f"study {cfg.name!r} was created by a plain search (an earlier schedsearch, or a "
            "study file without [contest]); its trials cannot race. Start the contest as a "
            f"separate study with `--study-name {cfg.name}-contest`, or delete the old one "
            f"(`optuna delete-study --study-name {cfg.name} --storage URL`)")
    for key in sorted(set(theirs) | set(mine)):
        if key in theirs and theirs.get(key) != mine.get(key):
            raise UserError(
                f"study {cfg.name!r} already exists with {key} = {theirs.get(key)!r}, but this "
                f"run asks for {mine.get(key)!r}; start a separate study with "
                f"`--study-name NAME` (or another `name` in {cfg.path.name}) so results "
                "don't mix"
            )


def create_or_load(
    cfg: StudyConfig, storage: optuna.storages.BaseStorage | str, worker: int = 0
) -> optuna.Study:
    """The study named cfg.name: created with the known-good defaults enqueued, or loaded."""
    study = optuna.create_study(
        study_name=cfg.name,
        storage=storage,
        sampler=make_sampler(cfg, worker),
        pruner=make_pruner(cfg),
        direction=cfg.goal.direction,  # type: ignore[arg-type]  # one of DIRECTIONS
        load_if_exists=True,
    )
    if not cfg.goal.holds(study):
        raise UserError(
            f"study {cfg.name!r} already exists in this storage with direction "
            f"{study.directions[0].name.lower()}, but this run asks to "
            f"{cfg.goal.direction} {cfg.goal.metric!r}; start a separate study with "
            f"`--study-name NAME` (or another `name` in {cfg.path.name})"
        )
    keys = record.Study
    if record.study_of(study):
        _check_identity(study, cfg)
    else:
        record.set_study(study, keys.IDENTITY, identity(cfg))
        record.set_study(study, keys.OBJECTIVE, cfg.objective)
        record.set_study(study, keys.DATASET, cfg.train.dataset)
        record.set_study(study, keys.EPOCHS, cfg.epochs)
        if cfg.contest is not None:  # race seeds follow the first runs' training seed
            record.set_study(study, keys.SEARCH_SEED, cfg.train.seed)
    if cfg.contest is None and cfg.space.enqueue_defaults and not _any_trial(study):
        for params in space.defaults(cfg.space, cfg.epochs):
            # marked: a default is never pruned, so the search reports at least its result
            record.enqueue(study, record.Enqueued(default=True), params, skip_if_exists=True)
    return study


def _any_trial(study: optuna.Study) -> bool:
    """Whether the study holds a trial in any state (counted by the database)."""
    store = compat.storage_of(study)
    return any(compat.count_trials(store, compat.study_id(study), tuple(TrialState)).values())


class Recorder:
    """The `report` callable given to an objective, bound to one Optuna trial.

    Two forms (`REPORT_FORMS`): the built-in objective's positional `report(epoch, val_loss,
    val_acc, lr)`, and `report(epoch, {"val_loss": 1.2, "val_acc": 0.6, ...}, lr=None)` with
    every metric of that evaluation. Every metric is recorded; the study's `metric` is the
    trial's objective (reported for pruning; missing: one line naming those reported). `lr` is
    the LR the epoch's first optimizer step applied; left out, it is read from the schedule's
    trace of applied LRs.

    `report(epoch, ...)` gets the 0-based epoch (evaluation) index from the objective; Optuna is
    told the number of epochs trained (epoch + 1), so a pruner's `min_resource`,
    `max_resource` and `n_warmup_steps` count epochs as the study file says. Trials enqueued as
    the study's known-good defaults (user attr `default`) are never pruned. With
    `defer_prune`, the caller asks `prune_check()` itself (an array: every member reports
    before any is pruned).
    """

    def __init__(
        self, trial: optuna.Trial, on_epoch: Callable[..., None] | None = None,
        defer_prune: bool = False, metric: str = ACCURACY,
    ) -> None:
        self.trial, self.on_epoch, self.defer_prune = trial, on_epoch, defer_prune
        self.metric = metric
        self.write = record.Writer(trial)
        self.lrs: list[float | None] = []
        self.curves: dict[str, list[float | None]] = {}  # metric -> its value per epoch
        self._built: schedules.Built | None = None
        self._epoch_start = 0  # optimizer steps taken before this epoch

    def built(self, b: schedules.Built) -> None:
        """Called by schedules.build: record exactly what torch received."""
        self._built = b
        self.write.built(b.schedule.to_dict() if b.schedule is not None else None, b.kwargs,
                         b.interval, b.steps_per_epoch, b.epochs, b.warmup)
        optimizer = getattr(b.scheduler, "optimizer", None)
        if optimizer is not None:  # what torch received replaces what was asked for
            record_optimizer(self.trial, optimizer)

    @property
    def values(self) -> list[float | None]:
        """The objective metric's value after each epoch so far."""
        return self.curves.get(self.metric, [])

    def __call__(self, epoch: int, *args: Any, **kwargs: Any) -> None:
        metrics, lr_applied = _reported(epoch, args, kwargs)
        if lr_applied is None:
            lr_applied = self._lr_of_epoch()
        self._epoch_start = self._built.steps if self._built is not None else 0
        self.lrs.append(_finite(lr_applied))
        for name in metrics.keys() | self.curves.keys():  # a metric absent this time: None
            curve = self.curves.setdefault(name, [None] * (len(self.lrs) - 1))
            curve.append(_finite(metrics.get(name, math.nan)))
        b = self._built
        self.write.epoch(self.lrs, self.curves,
                         (b.every, list(b.trace)) if b is not None else None)
        if self.metric not in metrics:
            raise UserError(
                f"the objective reported {', '.join(sorted(metrics)) or 'no metric'} but not "
                f"{self.metric!r}, the study's `objective.metric`; set it to one of those, or "
                "report it")
        value = float(metrics[self.metric])
        loss = float(metrics.get("val_loss", 0.0))
        if not math.isfinite(value) or not math.isfinite(loss):
            raise Diverged(epoch, -1, value if not math.isfinite(value) else loss)
        self.trial.report(value, epoch + 1)
        if self.on_epoch is not None:
            self.on_epoch(self.trial.number, epoch + 1, value)
        if not self.defer_prune:
            self.prune_check()

    def _lr_of_epoch(self) -> float:
        """The LR of this epoch's first optimizer step, from the trace of applied LRs (its
        nearest recorded step where the trace keeps every k-th)."""
        b = self._built
        if b is None or not b.trace:
            return math.nan
        return b.trace[min(len(b.trace) - 1, round(self._epoch_start / b.every))]

    def test(self, test_loss: float, test_acc: float) -> None:
        """The test split's score after the last epoch (objective setting `final_test`)."""
        self.write.test(test_loss, test_acc)

    def prune_check(self) -> None:
        """Raise TrialPruned when the pruner says so (never for an enqueued default or a
        fixed run)."""
        r = record.of(self.trial)
        if r.default or r.is_fixed or not self.trial.should_prune():
            return
        self.end(record.End.PRUNED)
        last = self.values[-1] if self.values else None
        shown = math.nan if last is None else last
        raise optuna.TrialPruned(f"pruned after {len(self.lrs)} epochs ({self.metric} "
                                 f"{shown:.4f})")

    def end(self, reason: str) -> None:
        """Why the trial ends (one of record.End); its state follows when it is told."""
        self.write.end(reason)


# The two ways an objective may call `report`, for the line that says it called it otherwise.
REPORT_FORMS = ("report(epoch, val_loss, val_acc, lr)",
                'report(epoch, {"metric": value, ...}, lr=None)')


def _reported(epoch: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
              ) -> tuple[dict[str, float], float | None]:
    """The metrics and applied LR of one `report` call, in either form (`REPORT_FORMS`)."""
    ok = isinstance(epoch, numbers.Integral) and not isinstance(epoch, bool)
    metrics: Any = None
    lr: Any = None
    if ok and len(args) == 1 and set(kwargs) <= {"lr"} and isinstance(args[0], Mapping):
        metrics, lr = args[0], kwargs.get("lr")
    elif ok and len(args) == 2 and set(kwargs) == {"lr"} and isinstance(args[0], Mapping):
        ok = False  # lr twice
    elif ok and len(args) == 2 and not kwargs and isinstance(args[0], Mapping):
        metrics, lr = args
    elif ok and len(args) == 3 and not kwargs:
        metrics, lr = {"val_loss": args[0], "val_acc": args[1]}, args[2]
    else:
        ok = False
    if ok:
        ok = all(isinstance(k, str) and _number(v) for k, v in metrics.items()) and (
            lr is None or _number(lr))
    if not ok:
        got = ", ".join([repr(epoch)[:40], *(repr(a)[:40] for a in args),
                         *(f"{k}={v!r}"[:40] for k, v in kwargs.items())])
        raise UserError(f"the objective called report({got}); call {REPORT_FORMS[0]} or "
                        f"{REPORT_FORMS[1]}, with numbers")
    return {k: float(v) for k, v in metrics.items()}, None if lr is None else float(lr)


def _number(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, numbers.Real):
        return True
    try:  # a 0-d tensor or array (what frameworks log)
        return getattr(v, "ndim", None) == 0 and isinstance(float(v), float)
    except (TypeError, ValueError):
        return False


def _finite(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def is_oom(e: BaseException) -> bool:
    return type(e).__name__ == "OutOfMemoryError" or "out of memory" in str(e).lower()


def make_objective(
    cfg: StudyConfig, on_epoch: Callable[..., None] | None = None
) -> Callable[[optuna.Trial], float]:
    """The Optuna objective for this study: suggest, train, record, prune."""
    func = load_objective(cfg.objective)

    def objective(trial: optuna.Trial) -> float:
        rec = Recorder(trial, on_epoch, metric=cfg.train.metric)
        return train_recorded(func, *setup(cfg, rec), rec)

    return objective


def setup(cfg: StudyConfig, rec: Recorder) -> tuple[Any, schedules.ScheduleConfig]:
    """The claimed trial of `rec`, set up to train (every trial loop's one setup): the
    training settings and schedule it trains (a fixed run's own; else its parameters
    suggested from the space, around the LR scale in a contest), the optimizer asked for
    recorded."""
    trial = rec.trial
    if record.of(trial).is_fixed:
        schedule, train_cfg = fixed_run(cfg.train, trial)
    else:
        scale = None
        if cfg.contest is not None:
            scale = record.study_of(trial.study).get(record.Study.LR_SCALE)
            if scale is None:
                raise TrialFailed("a shape trial before the contest's LR scale was tuned")
        schedule = space.suggest(trial, cfg.space, cfg.epochs, lr_scale=scale,
                                 lr_factor=cfg.contest.lr_factor if cfg.contest else None)
        train_cfg = cfg.train
        if cfg.contest is not None:  # the race's first seed (state.run_of reads it)
            rec.write.seed(train_cfg.seed)
    record_optimizer(trial, schedule, optimizer_name(train_cfg))
    return train_cfg, schedule


def fixed_run(train_cfg: Any, trial: optuna.Trial | FrozenTrial | Mapping[str, Any]
              ) -> tuple[schedules.ScheduleConfig, Any]:
    """What a fixed run trains (a trial or its record's attributes): its schedule, and the
    study's training settings with the run's own seed, epochs, split and schedule-free
    optimizer where it sets them."""
    r = record.of(trial)
    changes = {k: v for k, v in (("seed", r.seed), ("epochs", r.epochs), ("holdout", r.split))
               if v is not None}
    if r.optimizer_name:
        changes["optimizer"] = r.optimizer_name
    if r.fixed is None:
        raise UserError("a fixed run without its schedule; queue it again")
    schedule = schedules.ScheduleConfig.from_dict(r.fixed)
    return schedule, dataclasses.replace(train_cfg, **{k: type(getattr(train_cfg, k))(v)
                                                        for k, v in changes.items()})


def optimizer_name(train_cfg: Any) -> str:
    """The torch class name of the optimizer `train_cfg` names (SGD where it names none)."""
    from objectives.optimizers import OPTIMIZERS

    return OPTIMIZERS[train_cfg.optimizer].name if train_cfg.optimizer in OPTIMIZERS else "SGD"


def record_optimizer(trial: optuna.Trial, s: Any, name: str = "SGD") -> None:
    """The trial's `optimizer` attr. `s` a torch optimizer: exactly what it received (class and
    every constructor argument, torch's defaults filled in). `s` a ScheduleConfig, before
    training: the knobs asked for, until the objective builds its schedule on the real one."""
    if isinstance(s, schedules.ScheduleConfig):
        asked = {"name": name, "lr": s.lr, "weight_decay": s.weight_decay}
        kind = by_class(name)
        if kind is None or not kind.adam:
            asked["momentum"] = s.momentum
        if kind is None or kind.nesterov:
            asked["nesterov"] = nesterov(s.momentum)
        record.Writer(trial).optimizer(asked)
    else:
        from objectives.classify import optimizer_record

        record.Writer(trial).optimizer(optimizer_record(s))


def train_recorded(
    func: Callable[..., float], train_cfg: Any, schedule: schedules.ScheduleConfig, rec: Recorder
) -> float:
    """Call an objective, turning how it ended into the trial's state and `end_reason`."""
    try:
        raw = func(train_cfg, dataclasses.replace(schedule, listener=rec.built), rec)
    except Diverged as e:
        rec.end(record.End.NON_FINITE)
        raise optuna.TrialPruned(f"non-finite loss: {e}") from None
    except KeyboardInterrupt:
        rec.end(record.End.INTERRUPTED)
        raise
    except RuntimeError as e:
        if not is_oom(e):
            raise
        rec.end(record.End.OOM)
        raise TrialFailed(f"out of memory: {e}") from None
    if raw is None and rec.values and rec.values[-1] is not None:
        raw = rec.values[-1]  # nothing returned: the metric's last report is the value
    if isinstance(raw, bool) or not isinstance(raw, numbers.Real):
        rec.end(record.End.BAD_RETURN)
        name = f"{getattr(func, '__module__', '?')}:{getattr(func, '__qualname__', func)}"
        raise UserError(f"objective {name} returned {str(raw)[:80]!r} (a "
                        f"{type(raw).__name__}); it must return the study's metric "
                        f"({rec.metric}) as a number, or None after reporting it")
    value = float(raw)
    if not math.isfinite(value):
        rec.end(record.End.NON_FINITE)
        raise optuna.TrialPruned("objective returned a non-finite value")
    return value


def prepare(cfg: StudyConfig) -> None:
    """Fail before touching the store (one clear line): the objective's own checks, where it
    has them as its `prepare` attribute (the built-in objective: its data is there; the
    framework adapters: the user's classes import, the metric is logged)."""
    check = getattr(load_objective(cfg.objective), "prepare", None)
    if callable(check):
        check(cfg.train)

"""The trial record: every user attribute a trial or a study stores is named here, and only here.

A trial's record has two writers and many readers:

- `Enqueued`: what a fixed run (a contest's reference or race run, a validation run, a
  study's known-good default) is enqueued with: its budget-free schedule (nothing of it is
  sampled), seed, length, split and the tags its readers group it by. `enqueue` queues it.
- `Writer`: what training stores on a trial (`runner.Recorder`; the report benchmark's
  synthetic trials): the schedule and the optimizer exactly as torch received them, the
  curves after each epoch, the test score, the seed of a shape trial, and how the trial
  ended (`end_reason`, one of `End`).
- `Record`: the typed read of both, for a live Trial, a FrozenTrial or a bare attribute
  mapping. Stores written by older versions read as None where a key is missing.

A study's own attributes (`Study`, `study_of`, `set_study`) and the engine's system
attributes of a trial (`CLAIMED`, `WORKER`, `ENGINE`, `WORKERS_STARTED`) are named here too.
`tests/test_record.py` fails on any user-attribute access outside this module.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from optuna.trial import TrialState

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage
    from optuna.trial import FrozenTrial

__all__ = ["CLAIMED", "COMPANION_SCHEDULE", "ENGINE", "End", "Enqueued", "FINISHED", "FIXED",
           "Record", "Study", "UNKNOWN", "Validated", "WORKER", "WORKERS_STARTED", "Writer",
           "claimed_of", "end_attrs", "enqueue", "epochs_trained", "family_of",
           "next_worker_index", "of", "set_study", "set_validated", "store_claim", "store_end",
           "study_of", "validated", "with_attrs", "worker_of"]

# The keys of a trial's user attributes.
FIXED = "fixed_schedule"  # a fixed run's budget-free schedule (ScheduleConfig.to_dict())
DEFAULT = "default"  # an enqueued known-good default: never pruned
SEED = "seed"
EPOCHS = "epochs"  # a fixed run's length; what training built (the schedule's budget)
HOLDOUT = "holdout"  # a validation run's split: "test", or "val" for an LR sweep
OPTIMIZER_NAME = "optimizer_name"  # a fixed run's optimizer, where not the study's
STAGE, CONTENDER, LABEL, SLOT, GRID_STEP = "stage", "contender", "label", "slot", "grid_step"
SOURCE_TRIAL = "source_trial"
VALIDATE_KEY, ROLES, SWEEP_FOR = "validate_key", "roles", "sweep_for"
SEARCHED_STUDY = "searched_study"
REPEAT_OF = "repeat_of"  # a benchmark's repeat of a trial on another seed
SCHEDULE = "schedule"  # the budget-free schedule training built
SCHEDULER_KWARGS, INTERVAL, STEPS_PER_EPOCH, WARMUP = (
    "scheduler_kwargs", "interval", "steps_per_epoch", "warmup")
OPTIMIZER = "optimizer"  # the optimizer's class and every argument torch received
LR_CURVE, VAL_ACC_CURVE, VAL_LOSS_CURVE = "lr_curve", "val_acc_curve", "val_loss_curve"
# Every reported metric's curve, {name: [value per epoch]}; val_acc and val_loss are also kept
# under their own keys above (what stores and readers before named metrics know).
METRIC_CURVES = "metric_curves"
_OWN_KEY = {"val_acc": VAL_ACC_CURVE, "val_loss": VAL_LOSS_CURVE}
LR_TRACE = "lr_trace"  # {"every": k, "lr": [LR at every k-th optimizer step]}
TEST_LOSS, TEST_ACC = "test_loss", "test_acc"
END_REASON = "end_reason"

# The engine's system attributes of a trial and a study (search.engine.claim).
CLAIMED = "claimed_user_attrs"  # the user attrs a trial had when claimed (its retry keeps them)
WORKER = "worker"  # host:pid of the worker that claimed it
ENGINE = "engine"  # "array" for a fused array's trial
WORKERS_STARTED = "workers_started"  # study: sampler seed streams handed out so far

UNKNOWN = "?"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)  # the states of a trial that has finished


class End:
    """Why a trial ended, where its state alone does not say (`end_reason`)."""

    PRUNED = "pruned"  # the pruner stopped it
    NON_FINITE = "non_finite_loss"  # diverged: pruned at once
    INTERRUPTED = "interrupted"  # SIGTERM, Ctrl-C
    OOM = "oom"
    BAD_RETURN = "bad_return"  # a user objective returned no number
    WORKER_LOST = "worker_lost"  # no heartbeat for the grace period: failed and retried
    STORAGE_ERROR = "storage_error"  # the store refused a write, or stayed away
    NOT_DUE = "not_due"  # a queued run an older plan left: failed, never trained


def end_attrs(reason: str) -> dict[str, str]:
    """The attributes that say why a trial ended (for the store-level writes of the engine)."""
    return {END_REASON: reason}


@dataclasses.dataclass(frozen=True)
class Enqueued:
    """What a fixed run or a default is enqueued with; `attrs()` is its stored form."""

    schedule: Mapping[str, Any] | None = None  # budget-free; None: sampled (a default)
    default: bool = False
    seed: int | None = None
    epochs: int | None = None
    holdout: str | None = None
    optimizer_name: str | None = None
    stage: str | None = None
    contender: str | None = None
    label: str | None = None
    slot: str | None = None
    grid_step: int | None = None
    source_trial: int | None = None
    validate_key: str | None = None
    roles: tuple[str, ...] | None = None
    sweep_for: str | None = None
    searched_study: str | None = None
    repeat_of: int | None = None

    def attrs(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.schedule is not None:
            out[FIXED] = dict(self.schedule)
        if self.default:
            out[DEFAULT] = True
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name not in ("schedule", "default") and v is not None:
                out[f.name] = list(v) if isinstance(v, tuple) else v
        return out


def enqueue(study: optuna.Study, run: Enqueued, params: Mapping[str, Any] | None = None,
            skip_if_exists: bool = False) -> None:
    """Queue `run` on `study` (with `params` fixed, for a default)."""
    study.enqueue_trial(dict(params or {}), user_attrs=run.attrs(),
                        skip_if_exists=skip_if_exists)


def _attrs(source: Any) -> Mapping[str, Any]:
    if isinstance(source, Mapping):
        return source
    return getattr(source, "user_attrs", None) or {}


def _int(v: Any) -> int | None:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _float(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _str(v: Any) -> str | None:
    return None if v is None else str(v)


def _dict(v: Any) -> dict[str, Any] | None:
    return v if isinstance(v, dict) else None


def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _read(key: str, kind: Callable[[Any], Any], doc: str = "") -> property:
    """A typed read of one key (None where the trial stored none, or stored it wrongly)."""
    return property(lambda self: kind(self.attrs.get(key)), doc=doc or key)


class Record:
    """A trial's record, read: `of(trial)` (a Trial, a FrozenTrial or its user attrs)."""

    __slots__ = ("attrs",)

    def __init__(self, attrs: Mapping[str, Any]) -> None:
        self.attrs = attrs

    # What it was enqueued with (a fixed run, a default), or wrote about itself.
    fixed = _read(FIXED, _dict, "A fixed run's budget-free schedule; None for a sampled trial.")
    seed = _read(SEED, _int)
    epochs = _read(EPOCHS, _int)
    split = _read(HOLDOUT, _str, "The split a fixed run was enqueued to be scored on, if any.")
    optimizer_name = _read(OPTIMIZER_NAME, lambda v: _str(v) or None)
    stage = _read(STAGE, _str)
    contender = _read(CONTENDER, _str)
    label = _read(LABEL, _str)
    slot = _read(SLOT, _str)
    grid_step = _read(GRID_STEP, _int)
    source_trial = _read(SOURCE_TRIAL, _int)
    validate_key = _read(VALIDATE_KEY, _str)
    roles = _read(ROLES, lambda v: tuple(_list(v)))
    sweep_for = _read(SWEEP_FOR, _str)
    searched_study = _read(SEARCHED_STUDY, _str)
    repeat_of = _read(REPEAT_OF, _int)
    default = _read(DEFAULT, bool, "An enqueued known-good default (never pruned).")
    # What training wrote.
    schedule = _read(SCHEDULE, _dict, "The budget-free schedule training built.")
    scheduler_kwargs = _read(SCHEDULER_KWARGS, _dict)
    interval = _read(INTERVAL, _str)
    steps_per_epoch = _read(STEPS_PER_EPOCH, _int)
    warmup = _read(WARMUP, _dict)
    optimizer = _read(OPTIMIZER, _dict, "The optimizer's class and every argument it received.")
    val_acc_curve = _read(VAL_ACC_CURVE, lambda v: v if isinstance(v, list) else [])
    lr_trace = _read(LR_TRACE, _dict)
    test_loss = _read(TEST_LOSS, _float)
    test_acc = _read(TEST_ACC, _float)
    end_reason = _read(END_REASON, lambda v: _str(v) or None)

    @property
    def is_fixed(self) -> bool:
        return FIXED in self.attrs

    @property
    def holdout(self) -> str:
        """The split a validation run was scored on: "test" unless it says "val"."""
        return "val" if self.attrs.get(HOLDOUT) == "val" else "test"

    @property
    def lr(self) -> float | None:
        """The LR the optimizer received (else the one asked for, before training)."""
        return _float((self.optimizer or {}).get("lr"))

    def curve(self, key: str) -> list[Any] | None:
        """A per-epoch curve as stored (`LR_CURVE`, `VAL_ACC_CURVE`, `VAL_LOSS_CURVE`); None
        where the trial stored none."""
        v = self.attrs.get(key)
        return v if isinstance(v, list) else None

    def metric_curve(self, metric: str) -> list[Any] | None:
        """A reported metric's value per epoch (None where the trial stored none)."""
        curves = self.attrs.get(METRIC_CURVES)
        if isinstance(curves, Mapping) and isinstance(curves.get(metric), list):
            return curves[metric]
        return self.curve(_OWN_KEY[metric]) if metric in _OWN_KEY else None

    @property
    def metrics(self) -> tuple[str, ...]:
        """The names of the metrics the trial reported."""
        curves = self.attrs.get(METRIC_CURVES)
        if isinstance(curves, Mapping):
            return tuple(curves)
        return tuple(m for m, k in _OWN_KEY.items() if k in self.attrs)

    @property
    def diverged(self) -> bool:
        return self.attrs.get(END_REASON) == End.NON_FINITE


def of(trial: optuna.Trial | FrozenTrial | Mapping[str, Any]) -> Record:
    """The record of an optuna Trial or FrozenTrial, or of a user-attribute mapping."""
    return Record(_attrs(trial))


class Writer:
    """What training writes on a live trial (see the module docstring)."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.set = trial.set_user_attr

    def built(self, schedule: Mapping[str, Any] | None, kwargs: Mapping[str, Any],
              interval: str, steps_per_epoch: int, epochs: int,
              warmup: Mapping[str, Any] | None) -> None:
        if schedule is not None:
            self.set(SCHEDULE, dict(schedule))
        self.set(SCHEDULER_KWARGS, dict(kwargs))
        self.set(INTERVAL, interval)
        self.set(STEPS_PER_EPOCH, int(steps_per_epoch))
        self.set(EPOCHS, int(epochs))
        if warmup is not None:
            self.set(WARMUP, dict(warmup))

    def optimizer(self, record: Mapping[str, Any]) -> None:
        self.set(OPTIMIZER, dict(record))

    def seed(self, seed: int) -> None:
        self.set(SEED, int(seed))

    def epoch(self, lr: list[Any], curves: Mapping[str, list[Any]],
              trace: tuple[int, list[float]] | None) -> None:
        """The curves after an epoch: the applied LR and every reported metric (None where a
        value is not finite), and the LR trace (every k-th step's LR) where training keeps
        one."""
        self.set(LR_CURVE, list(lr))
        self.set(METRIC_CURVES, {k: list(v) for k, v in curves.items()})
        for metric, key in _OWN_KEY.items():
            if metric in curves:
                self.set(key, list(curves[metric]))
        if trace is not None:
            self.set(LR_TRACE, {"every": trace[0], "lr": list(trace[1])})

    def test(self, loss: float, acc: float) -> None:
        self.set(TEST_LOSS, float(loss))
        self.set(TEST_ACC, float(acc))

    def end(self, reason: str) -> None:
        self.set(END_REASON, reason)


# What a trial's record says together with the trial itself (its parameters, its reports).
def family_of(trial: optuna.Trial | FrozenTrial | None, unknown: str = UNKNOWN) -> str:
    """The family of an optuna Trial or FrozenTrial (`unknown` before anything says it): its
    `scheduler` parameter where it was sampled, else its schedule record (what training
    wrote, or what a fixed run was given)."""
    if trial is None:
        return unknown
    params = getattr(trial, "params", {}) or {}
    if "scheduler" in params:
        return str(params["scheduler"])
    r = of(trial)
    for sched in (r.schedule, r.fixed):
        if sched is not None and "family" in sched:
            return str(sched["family"])
    return unknown


def epochs_trained(trial: optuna.Trial | FrozenTrial | Mapping[str, Any]) -> int:
    """Epochs a trial trained and reported: its LR curve's length (one entry per report, in
    either form; stores before it: the validation-accuracy curve), else (a store written
    before the curves, a bare attribute mapping without one) the epochs it reported to
    Optuna."""
    r = of(trial)
    curve = r.curve(LR_CURVE) or r.curve(VAL_ACC_CURVE)
    if curve is not None:
        return len(curve)
    return len(getattr(trial, "intermediate_values", None) or ())


def value_of(trial: FrozenTrial) -> float:
    """A complete trial's value (Optuna sets it on completion: every study has one
    objective), where the caller knows the trial completed."""
    value = trial.value
    assert value is not None, f"trial {trial.number} has no value"
    return value


# A study's user attributes.
class Study:
    """The keys of a study's user attributes."""

    IDENTITY = "identity"  # the settings that give its values their meaning (runner.identity)
    OBJECTIVE, DATASET, EPOCHS = "objective", "dataset", "epochs"  # before identities existed
    SEARCH_SEED = "search_seed"  # a contest's first training seed (the race: +1, +2, ...)
    LR_SCALE = "lr_scale"  # the LR a contest's shapes are searched around
    LR_LAW = "lr_law"  # a contest's LR-law fits, for people (every reader fits them again)
    # A validation's companion study (search.validation.validate)
    SEARCHED_STUDY, HOLDOUT, NOTES = "searched_study", "holdout", "notes"
    SEARCHED_EPOCHS = "searched_epochs"


COMPANION_SCHEDULE = "schedule."  # + a validation key: what that key trains (`Validated`)


@dataclasses.dataclass(frozen=True)
class Validated:
    """What a validation's companion study says of one schedule it trains (its study attr
    COMPANION_SCHEDULE + key): for `best`, the report and people in optuna-dashboard."""

    label: str | None = None
    family: str = ""
    roles: tuple[str, ...] = ()
    source_trial: int | None = None  # the searched trial it comes from
    lr: float | None = None
    lr_source: str = ""  # where a baseline's LR comes from, in words
    lr_trial: int | None = None  # the searched trial that lent a baseline its LR

    def attrs(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "roles": sorted(self.roles)}

    @classmethod
    def of(cls, v: Mapping[str, Any]) -> Validated:
        return cls(label=_str(v.get("label")), family=str(v.get("family") or ""),
                   roles=tuple(_list(v.get("roles"))), source_trial=_int(v.get("source_trial")),
                   lr=_float(v.get("lr")), lr_source=str(v.get("lr_source") or ""),
                   lr_trial=_int(v.get("lr_trial")))


def validated(study: optuna.Study) -> dict[str, Validated]:
    """Each validation key of a companion study, and what it trains."""
    return {k.removeprefix(COMPANION_SCHEDULE): Validated.of(v)
            for k, v in study.user_attrs.items()
            if k.startswith(COMPANION_SCHEDULE) and isinstance(v, Mapping)}


def set_validated(study: optuna.Study, key: str, v: Validated) -> None:
    set_study(study, COMPANION_SCHEDULE + key, v.attrs())


def study_of(study: optuna.Study) -> Mapping[str, Any]:
    """A study's user attributes (read them with the `Study` keys)."""
    return study.user_attrs


def set_study(study: optuna.Study, key: str, value: Any) -> None:
    """Set one of a study's user attributes, where it changed."""
    if study.user_attrs.get(key) != value:
        study.set_user_attr(key, value)


# The engine's writes and reads of a trial by its storage id (search.engine.claim).
def store_end(store: BaseStorage, trial_id: int, reason: str) -> None:
    """Say why trial `trial_id` ended, through `store` (its state is set by the caller)."""
    store.set_trial_user_attr(trial_id, END_REASON, reason)


def store_claim(store: BaseStorage, trial_id: int, enqueued: Mapping[str, Any], worker: str,
                engine: str | None = None) -> None:
    """What a claim records on its trial (system attributes): the user attributes it was
    enqueued with (its retry keeps exactly those), the worker, and the engine."""
    attrs: dict[str, Any] = {WORKER: worker, CLAIMED: dict(enqueued)}
    if engine is not None:
        attrs[ENGINE] = engine
    for key, value in attrs.items():
        store.set_trial_system_attr(trial_id, key, value)


def claimed_of(trial: FrozenTrial) -> dict[str, Any]:
    """The user attributes a claimed trial was enqueued with (empty before claims recorded
    them: an older schedsearch, or a worker that died between ask and claim)."""
    return dict(trial.system_attrs.get(CLAIMED, {}))


def with_attrs(trial: FrozenTrial, attrs: Mapping[str, Any]) -> FrozenTrial:
    """`trial` (a FrozenTrial copy) carrying exactly `attrs` as its user attributes."""
    trial.user_attrs = dict(attrs)
    return trial


def worker_of(trial: FrozenTrial) -> str | None:
    """host:pid of the worker that claimed `trial`."""
    w = trial.system_attrs.get(WORKER)
    return None if w is None else str(w)


def next_worker_index(store: BaseStorage, study_id: int) -> int:
    """Take the study's next sampler seed stream (call under the claim lock)."""
    index = int(store.get_study_system_attrs(study_id).get(WORKERS_STARTED, 0))
    store.set_study_system_attr(study_id, WORKERS_STARTED, index + 1)
    return index

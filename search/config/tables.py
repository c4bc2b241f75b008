"""Reading a study file's TOML tables: every key checked, unknown keys refused with a
"did you mean", each mistake naming the file and the key."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, TypeVar

from objectives.settings import TrainConfig
from search import schedules
from search.config.limits import (
    CHECKED,
    LIMITS,
    LR_FLOOR,
    NUM,
    finite,
    number_text,
    raise_hint,
    train_problem,
    train_value,
)
from search.config.settings import DEFAULT_OBJECTIVE, ParamSpec, SpaceConfig
from search.errors import UserError, closest, must, shown

__all__ = ["SECTIONS", "Table", "families_of", "range_spec", "space_of", "train_of"]


# Where each key of a study file lives, for "did you mean" across tables (`epoch` at the top
# is most likely `objective.epochs`).
SECTIONS: dict[str, tuple[str, ...]] = {
    "": ("name", "description", "trials", "seed", "storage", "objective", "space", "sampler",
         "pruner", "workers", "contest", "limits"),
    "objective": ("function", "dataset", "data_dir", "epochs", "batch_size", "width",
                  "val_fraction", "train_subset", "label_smoothing", "seed", "device", "augment",
                  "optimizer", "betas", "eps", "final_test", "metric", "direction"),
    "space": ("families", "lr", "momentum", "weight_decay", "warmup_epochs", "beta1", "beta2",
              "default_lr",
              "enqueue_defaults", "per_epoch"),
    "sampler": ("name", "n_startup_trials", "multivariate", "group"),
    "pruner": ("name", "n_startup_trials", "n_warmup_steps", "min_resource", "reduction_factor"),
    "workers": ("heartbeat_interval", "grace_period", "max_retry"),
    "contest": ("shape_trials", "finalists", "max_seeds", "noise_sd", "lr_factor", "horizons",
                "equivalence", "references"),
    "limits": tuple(LIMITS),
}


def _suggest(where: str, key: str, valid: list[str]) -> str:
    near = closest(key, valid)
    if near is not None:
        return f"did you mean `{f'{where}.{near}' if where else near}`? "
    for section, keys in SECTIONS.items():
        near = closest(key, keys) if section != where else None
        if near is not None:
            return f"did you mean `{f'{section}.{near}' if section else near}`? "
    return ""


class Table:
    """A TOML table being read: remembers which keys were used, so unknown ones can fail."""

    def __init__(self, data: Mapping[str, Any], where: str, file: Path | Traversable) -> None:
        if not isinstance(data, Mapping):
            raise UserError(f"{file}: {must(where, 'a table', data)}")
        self.used: set[str] = set()  # the keys read so far
        self.data, self.where, self.file = data, where, file

    def key(self, k: str) -> str:
        return f"{self.where}.{k}" if self.where else k

    def error(self, k: str, constraint: str, got: object, hint: str = "") -> UserError:
        return UserError(f"{self.file}: {must(self.key(k), constraint, got, hint)}")

    def get(self, k: str, default: Any, kind: type | tuple[type, ...], check=None, what=""):
        self.used.add(k)
        if k not in self.data:
            return default
        v = self.data[k]
        is_bool_for_number = isinstance(v, bool) and kind in (int, float, NUM)
        ok = isinstance(v, kind) and not is_bool_for_number
        if ok and isinstance(v, float) and not math.isfinite(v):
            ok = False
        if not ok or (check is not None and not check(v)):
            hint = raise_hint(k, self.file, v) if self.where != "limits" else ""
            raise self.error(k, what or f"a {getattr(kind, '__name__', kind)}", v, hint)
        return v

    def count(self, k: str, default: int, low: int, high: int | float) -> int:
        """An integer key in [low, high]."""
        return self.get(k, default, int, lambda v: low <= v <= high,
                        f"an integer in [{low}, {number_text(high)}]")

    def table(self, k: str) -> Table:
        self.used.add(k)
        return Table(self.data.get(k, {}), self.key(k), self.file)

    def done(self, valid: tuple[str, ...] = (), allowed_extra: Callable[[str], bool] | None = None,
             note: str = "") -> None:
        """Refuse the first key neither read nor `valid`, with a did-you-mean (and `note`)."""
        extra = [k for k in self.data if k not in self.used and k not in valid
                 and not (allowed_extra and allowed_extra(k))]
        if extra:
            names = sorted(self.used | set(valid))
            raise UserError(
                f"{self.file}: unknown key `{self.key(shown(extra[0])[1:-1])}`; "
                f"{_suggest(self.where, extra[0], names)}valid keys: {', '.join(names)}"
                + (f"; {note}" if note else "")
            )


_Default = TypeVar("_Default", ParamSpec, None)


def range_spec(t: Table, k: str, default: _Default, log: bool, bounds: schedules.Bounds,
          integer: bool = False) -> ParamSpec | _Default:
    """A number (fixed) or {low, high[, log]} table, inside `bounds`."""
    t.used.add(k)
    if k not in t.data:
        return default
    v = t.data[k]
    what = "an integer" if integer else "a finite number"

    def inside(key: str, x: Any) -> float:
        if not finite(x) or (integer and not float(x).is_integer()):
            raise t.error(key, what, x)
        if not bounds.contains(x):
            raise t.error(key, bounds.text(), x, raise_hint(k, t.file, x))
        return float(x)

    if not isinstance(v, Mapping):
        if not isinstance(v, NUM) or isinstance(v, bool):
            raise t.error(k, "a number or a table {low = ..., high = ...}", v)
        x = inside(k, v)
        return ParamSpec(x, x)
    sub = Table(v, t.key(k), t.file)
    low = sub.get("low", None, NUM, what="a finite number")
    high = sub.get("high", None, NUM, what="a finite number")
    use_log = sub.get("log", log, bool)
    sub.done()
    if low is None or high is None:
        raise t.error(k, "a table with both `low` and `high`", v)
    low, high = inside(f"{k}.low", low), inside(f"{k}.high", high)
    if low > high:
        raise t.error(f"{k}.low", f"<= `{k}.high` ({high:g})", low)
    if use_log and low <= 0:
        raise t.error(f"{k}.low", "> 0 for a log range", low, "use log = false or a low above 0")
    return ParamSpec(low, high, use_log)


def families_of(t: Table) -> tuple[str, ...]:
    fams = t.get("families", "all", (str, list))
    if fams == "all":
        return tuple(schedules.SCHEDULES)
    if isinstance(fams, str) or not fams:
        raise t.error("families", '"all" or a non-empty list of schedule names', fams)
    for name in fams:
        if not isinstance(name, str) or name not in schedules.SCHEDULES:
            near = closest(name, schedules.SCHEDULES) if isinstance(name, str) else None
            raise t.error(
                "families", f"names from {', '.join(schedules.SCHEDULES)}", name,
                f"did you mean {near!r}?" if near else
                "names are torch's class names, case-sensitive",
            )
    return tuple(dict.fromkeys(fams))


def per_epoch_of(t: Table) -> tuple[str, ...]:
    """[space] per_epoch: the families kept stepping once per epoch ("all": every one)."""
    epochwise = tuple(n for n, f in schedules.SCHEDULES.items() if f.interval == schedules.EPOCH)
    names = t.get("per_epoch", [], (str, list))
    if names == "all":
        return epochwise
    if isinstance(names, str) or any(n not in epochwise for n in names):
        bad = names if isinstance(names, str) else next(n for n in names if n not in epochwise)
        raise t.error("per_epoch", f'"all" or a list of families that torch steps per epoch '
                      f"({', '.join(epochwise)})", bad)
    return tuple(names)


def space_of(t: Table, fams: tuple[str, ...], epochs: int, limits: Mapping[str, Any]
           ) -> SpaceConfig:
    base = SpaceConfig(families=fams)
    ranges: dict[str, dict[str, ParamSpec]] = {}
    for name in fams:
        if name not in t.data:
            continue
        sub = t.table(name)
        params = schedules.family(name).params
        for p in params:
            if p.name in sub.data and p.kind != "categorical":
                spec = range_spec(sub, p.name, ParamSpec(p.low, p.high, p.log), p.log, p.limits,
                             integer=p.kind in ("int", "cuts"))
                ranges.setdefault(name, {})[p.name] = spec
        sub.done(valid=tuple(p.name for p in params))
    space = SpaceConfig(
        families=fams,
        lr=range_spec(t, "lr", base.lr, True, schedules.Bounds(LR_FLOOR, limits["lr"])),
        momentum=range_spec(t, "momentum", base.momentum, False,
                       schedules.Bounds(0.0, 1.0, high_open=True)),
        weight_decay=range_spec(t, "weight_decay", base.weight_decay, False,
                           schedules.Bounds(0.0, 1.0)),
        warmup_epochs=range_spec(t, "warmup_epochs", base.warmup_epochs, False,
                            schedules.Bounds(0.0, float(epochs))),
        beta1=range_spec(t, "beta1", None, False, schedules.Bounds(0.0, 1.0, high_open=True)),
        beta2=range_spec(t, "beta2", None, False, schedules.Bounds(0.0, 1.0, high_open=True)),
        ranges=ranges,
        default_lr=t.get("default_lr", base.default_lr, NUM,
                         lambda v: LR_FLOOR <= v <= limits["lr"],
                         f"a number in [{LR_FLOOR:g}, {limits['lr']:g}]"),
        enqueue_defaults=t.get("enqueue_defaults", True, bool),
        per_epoch=per_epoch_of(t),
    )
    if "default_lr" in t.data and not space.lr.low <= space.default_lr <= space.lr.high:
        raise t.error("default_lr", f"inside the searched lr range [{space.lr.low:g}, "
                      f"{space.lr.high:g}]", space.default_lr)
    t.done(valid=SECTIONS["space"], allowed_extra=lambda k: k in schedules.SCHEDULES
           and k not in fams)
    for k in t.data:
        if k in schedules.SCHEDULES and k not in fams:
            raise t.error(k, f"a family listed in `{t.key('families')}`", k)
    return space


def train_of(t: Table, objective: str, file: Path | Traversable, limits: Mapping[str, Any],
             declared: Callable[[str], tuple[str, ...] | None]) -> TrainConfig:
    """The [objective] table: the TrainConfig settings checked; every other key goes to
    `options`. The built-in objective takes none; a user's objective takes any, unless it
    declares the ones it reads (`declared(objective)`, asked only where there are other keys:
    it imports the objective), then others are refused as for every other key."""
    if objective != DEFAULT_OBJECTIVE:
        _function_spelling(objective, t)
    known = [f.name for f in dataclasses.fields(TrainConfig) if f.name != "options"]
    defaults = TrainConfig()
    values: dict[str, Any] = {}
    for name in [n for n in known if n in t.data]:  # in the fields' order
        v = t.data[name]
        t.used.add(name)
        if name == "holdout":
            raise t.error(name, "set by `validate`, not in a study file", v)
        problem = train_problem(name, v, limits)
        if problem is None and name == "dataset":
            from objectives import data

            custom = objective != DEFAULT_OBJECTIVE
            if not isinstance(v, str) or not (custom or v in data.DATASETS):
                problem = "a string" if custom else f"one of {', '.join(data.DATASETS)}"
        default = getattr(defaults, name)
        if problem is None and name not in CHECKED and default is not None and (
                type(v) is not type(default) or (isinstance(v, float) and not finite(v))):
            problem = f"a {'finite ' if isinstance(default, float) else ''}" \
                f"{type(default).__name__}"  # a setting added to TrainConfig later
        if problem:
            raise t.error(name, problem, v, raise_hint(name, file, v))
        values[name] = train_value(name, v)
    _goal_of(t, objective, values)
    options = {k: v for k, v in t.data.items() if k not in known and k != "function"}
    if objective == DEFAULT_OBJECTIVE:
        t.done(valid=SECTIONS["objective"])
    elif options and (names := declared(objective)) is not None:
        module_name, _, func_name = objective.partition(":")
        t.done(valid=SECTIONS["objective"] + names,
               note=f"{objective} takes the options its `{func_name}.options` declares "
                    f"(in {module_name}: add a new one there)")
    return TrainConfig(**values, options=options)


# What the built-in objective reports (objectives.classify, positional `report`), and the
# direction each is better in.
BUILT_IN_METRICS = {"val_acc": "maximize", "val_loss": "minimize"}


def _goal_of(t: Table, objective: str, values: dict[str, Any]) -> None:
    """`metric` and `direction`: the built-in objective reports val_acc and val_loss only; a
    metric other than the default needs its direction said (a loss maximised, silently, would
    search for the worst schedule)."""
    metric = values.get("metric", TrainConfig.metric)
    if objective == DEFAULT_OBJECTIVE and metric not in BUILT_IN_METRICS:
        raise t.error("metric", f"one of {', '.join(map(repr, BUILT_IN_METRICS))} (what the "
                      "built-in objective reports)", metric)
    if "metric" in values and "direction" not in values and metric != TrainConfig.metric:
        raise UserError(f"{t.file}: `{t.key('direction')}` must be set beside "
                        f"`{t.key('metric')}` = {metric!r}: \"minimize\" where lower is "
                        'better (a loss, an error), "maximize" where higher is')


def _function_spelling(spec: str, t: Table) -> None:
    """The spelling of `function` (importing it is load_objective's, before a study exists)."""
    module_name, _, func_name = spec.partition(":")
    ok = all(part.isidentifier() for part in module_name.split(".")) and func_name.isidentifier()
    if not ok:
        raise t.error("function", "package.module:function", spec)

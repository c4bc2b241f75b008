"""Study files (studies/*.toml) -> frozen dataclasses, validated at load time.

Every mistake names the file and the key: "`<key>` must be <constraint> but got <value>".
"""

from __future__ import annotations

import dataclasses
import importlib
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search import schedules
from search.errors import UserError, must

__all__ = [
    "STUDIES_DIR",
    "ParamSpec",
    "PrunerConfig",
    "SamplerConfig",
    "SpaceConfig",
    "StudyConfig",
    "WorkersConfig",
    "load_objective",
    "load_study",
    "study_names",
]

STUDIES_DIR = Path(__file__).resolve().parent.parent / "studies"
DEFAULT_OBJECTIVE = "objectives.classify:train"
_NUM = (int, float)


@dataclass(frozen=True)
class ParamSpec:
    """A searched range, or a fixed value when low == high."""

    low: float
    high: float
    log: bool = False

    @property
    def fixed(self) -> bool:
        return self.low == self.high


@dataclass(frozen=True)
class SpaceConfig:
    families: tuple[str, ...]
    lr: ParamSpec = ParamSpec(1e-3, 1.0, log=True)
    momentum: ParamSpec = ParamSpec(0.9, 0.9)
    weight_decay: ParamSpec = ParamSpec(5e-4, 5e-4)
    warmup_epochs: ParamSpec = ParamSpec(0.0, 0.0)
    # per family, overrides of the catalog's default ranges: {"StepLR": {"gamma": ParamSpec}}
    ranges: Mapping[str, Mapping[str, ParamSpec]] = field(default_factory=dict)
    default_lr: float = 0.1  # base LR of the known-good schedules enqueued first
    enqueue_defaults: bool = True


@dataclass(frozen=True)
class SamplerConfig:
    name: str = "tpe"  # tpe | random
    n_startup_trials: int = 10
    multivariate: bool = True
    group: bool = True


@dataclass(frozen=True)
class PrunerConfig:
    name: str = "hyperband"  # hyperband | median | none
    n_startup_trials: int = 5  # median: trials finished before pruning starts
    n_warmup_steps: int = 1  # median: epochs reported before a trial can be pruned
    min_resource: int = 1  # hyperband: epochs
    reduction_factor: int = 3  # hyperband


@dataclass(frozen=True)
class WorkersConfig:
    heartbeat_interval: int = 30  # seconds between a running trial's heartbeats
    grace_period: int = 120  # seconds without heartbeat before a trial counts as dead
    max_retry: int = 3  # how often a dead worker's trial is re-queued


@dataclass(frozen=True)
class StudyConfig:
    name: str
    path: Path
    objective: str  # "package.module:function"
    train: Any  # objectives.classify.TrainConfig (kept Any: config does not import torch)
    space: SpaceConfig
    trials: int = 50
    seed: int = 0
    storage: str | None = None
    description: str = ""
    sampler: SamplerConfig = SamplerConfig()
    pruner: PrunerConfig = PrunerConfig()
    workers: WorkersConfig = WorkersConfig()

    @property
    def epochs(self) -> int:
        return self.train.epochs

    def with_overrides(self, **train_changes: Any) -> StudyConfig:
        """A copy with objective settings replaced (CLI flags: --epochs, --data-dir, ...)."""
        changes = {k: v for k, v in train_changes.items() if v is not None}
        if not changes:
            return self
        return dataclasses.replace(self, train=dataclasses.replace(self.train, **changes))


def study_names() -> list[str]:
    return sorted(p.stem for p in STUDIES_DIR.glob("*.toml"))


def _locate(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix == ".toml" or "/" in name_or_path:
        if not path.is_file():
            raise UserError(f"study file {name_or_path} does not exist")
        return path
    path = STUDIES_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        raise UserError(
            f"unknown study {name_or_path!r}; known studies: {', '.join(study_names())} "
            "(or pass a path to a .toml file)"
        )
    return path


class _Table:
    """A TOML table being read: remembers which keys were used, so unknown ones can fail."""

    def __init__(self, data: Mapping[str, Any], where: str, file: Path) -> None:
        if not isinstance(data, Mapping):
            raise UserError(f"{file}: `{where}` must be a table but got {data!r}")
        self.data, self.where, self.file, self.used = data, where, file, set()

    def key(self, k: str) -> str:
        return f"{self.where}.{k}" if self.where else k

    def error(self, k: str, constraint: str, got: object, hint: str = "") -> UserError:
        return UserError(f"{self.file}: {must(self.key(k), constraint, got, hint)}")

    def get(self, k: str, default: Any, kind: type | tuple[type, ...], check=None, what=""):
        self.used.add(k)
        if k not in self.data:
            return default
        v = self.data[k]
        is_bool_for_number = isinstance(v, bool) and kind in (int, float, _NUM)
        ok = isinstance(v, kind) and not is_bool_for_number
        if not ok or (check is not None and not check(v)):
            raise self.error(k, what or f"a {getattr(kind, '__name__', kind)}", v)
        return v

    def table(self, k: str) -> _Table:
        self.used.add(k)
        return _Table(self.data.get(k, {}), self.key(k), self.file)

    def done(self, allowed_extra: Callable[[str], bool] = lambda k: False) -> None:
        extra = [k for k in self.data if k not in self.used and not allowed_extra(k)]
        if extra:
            valid = ", ".join(sorted(self.used))
            raise UserError(
                f"{self.file}: unknown key `{self.key(extra[0])}`; valid keys: {valid}"
            )




def _spec(t: _Table, k: str, default: ParamSpec, log: bool, min_low: float = 0.0) -> ParamSpec:
    """A number (fixed) or {low, high[, log]} table."""
    t.used.add(k)
    if k not in t.data:
        return default
    v = t.data[k]
    if isinstance(v, _NUM) and not isinstance(v, bool):
        if v < min_low:
            raise t.error(k, f">= {min_low}", v)
        return ParamSpec(float(v), float(v))
    sub = _Table(v, t.key(k), t.file) if isinstance(v, Mapping) else None
    if sub is None:
        raise t.error(k, "a number or a table {low = ..., high = ...}", v)
    low = sub.get("low", None, _NUM, what="a number")
    high = sub.get("high", None, _NUM, what="a number")
    use_log = sub.get("log", log, bool)
    sub.done()
    if low is None or high is None:
        raise t.error(k, "a table with both `low` and `high`", v)
    if low > high:
        raise t.error(f"{k}.low", f"<= `{k}.high` ({high})", low)
    if use_log and low <= 0:
        raise t.error(f"{k}.low", "> 0 for a log range", low, "use log = false or a low above 0")
    if low < min_low:
        raise t.error(f"{k}.low", f">= {min_low}", low)
    return ParamSpec(float(low), float(high), use_log)


def _families(t: _Table) -> tuple[str, ...]:
    fams = t.get("families", "all", (str, list))
    if fams == "all":
        return tuple(schedules.SCHEDULES)
    if isinstance(fams, str) or not fams:
        raise t.error("families", '"all" or a non-empty list of schedule names', fams)
    for name in fams:
        if name not in schedules.SCHEDULES:
            raise t.error(
                "families", f"names from {', '.join(schedules.SCHEDULES)}", name,
                "names are torch's class names, case-sensitive",
            )
    return tuple(dict.fromkeys(fams))


def _space(t: _Table, fams: tuple[str, ...]) -> SpaceConfig:
    base = SpaceConfig(families=fams)
    ranges: dict[str, dict[str, ParamSpec]] = {}
    for name in fams:
        if name not in t.data:
            continue
        sub = t.table(name)
        for p in schedules.family(name).params:
            if p.name in sub.data:
                spec = _spec(sub, p.name, ParamSpec(p.low, p.high, p.log), p.log)
                if p.kind in ("int", "epochs") and spec.low < 0:
                    raise sub.error(p.name, ">= 0", spec.low)
                ranges.setdefault(name, {})[p.name] = spec
        sub.done()
    space = SpaceConfig(
        families=fams,
        lr=_spec(t, "lr", base.lr, True),
        momentum=_spec(t, "momentum", base.momentum, False),
        weight_decay=_spec(t, "weight_decay", base.weight_decay, False),
        warmup_epochs=_spec(t, "warmup_epochs", base.warmup_epochs, False),
        ranges=ranges,
        default_lr=t.get("default_lr", base.default_lr, _NUM, lambda v: v > 0, "a number > 0"),
        enqueue_defaults=t.get("enqueue_defaults", True, bool),
    )
    if space.momentum.high >= 1:
        raise t.error("momentum", "< 1", space.momentum.high)
    t.done(allowed_extra=lambda k: k in schedules.SCHEDULES and k not in fams)
    for k in t.data:
        if k in schedules.SCHEDULES and k not in fams:
            raise t.error(k, f"a family listed in `{t.key('families')}`", k)
    return space


def _train(t: _Table, objective: str, file: Path) -> Any:
    from objectives.classify import TrainConfig

    known = {f.name: f for f in dataclasses.fields(TrainConfig) if f.name != "options"}
    defaults = TrainConfig()
    values: dict[str, Any] = {}
    for name in known:
        if name not in t.data:
            continue
        default = getattr(defaults, name)
        v = t.data[name]
        t.used.add(name)
        if name == "width":
            if not (isinstance(v, list) and len(v) == 3
                    and all(isinstance(c, int) and c > 0 for c in v)):
                raise t.error(name, "a list of 3 positive channel counts (one per block)", v)
            v = tuple(v)
        elif name in ("epochs", "batch_size", "seed") or name == "train_subset":
            if not isinstance(v, int) or isinstance(v, bool) or v < (0 if name == "seed" else 1):
                raise t.error(name, "an integer >= 1" if name != "seed" else "an integer >= 0", v)
        elif name == "val_fraction":
            if not isinstance(v, _NUM) or not 0 < v < 1:
                raise t.error(name, "between 0 and 1 (exclusive)", v)
        elif name == "holdout":
            raise t.error(name, "set by `validate`, not in a study file", v)
        elif name == "optimizer":  # the schedule-free ones are `validate`'s baselines only
            if v not in ("sgd", "adamw"):
                raise t.error(name, '"sgd" or "adamw"', v)
        elif name == "betas":
            if not (isinstance(v, list) and len(v) == 2 and all(
                    isinstance(b, _NUM) and not isinstance(b, bool) and 0 <= b < 1 for b in v)):
                raise t.error(name, "two numbers in [0, 1), e.g. [0.9, 0.999]", v)
            v = (float(v[0]), float(v[1]))
        elif name == "eps":
            if not isinstance(v, _NUM) or isinstance(v, bool) or not v > 0:
                raise t.error(name, "a number > 0", v)
            v = float(v)
        elif name == "label_smoothing":
            if not isinstance(v, _NUM) or not 0 <= v < 1:
                raise t.error(name, "in [0, 1)", v)
        elif default is not None and not isinstance(v, type(default)):
            raise t.error(name, f"a {type(default).__name__}", v)
        values[name] = v
    custom = objective != DEFAULT_OBJECTIVE
    options = {k: v for k, v in t.data.items() if k not in known and k != "function"}
    if not custom:
        if "dataset" in values:
            from objectives import data

            if values["dataset"] not in data.DATASETS:
                raise t.error("dataset", f"one of {', '.join(data.DATASETS)}", values["dataset"])
        t.done()
    return TrainConfig(**values, options=options)


def load_objective(spec: str) -> Callable[..., float]:
    """Import "package.module:function"; a bad spec is a UserError."""
    module_name, _, func_name = spec.partition(":")
    if not module_name or not func_name:
        raise UserError(
            f"`objective.function` must look like package.module:function but got {spec!r}"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise UserError(f"objective module {module_name!r} cannot be imported: {e}") from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise UserError(f"objective {spec!r}: {module_name} has no function {func_name!r}")
    return func


def load_study(name_or_path: str) -> StudyConfig:
    """Read and validate a study file (a name from studies/ or a path)."""
    path = _locate(name_or_path)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path}: malformed TOML: {e}") from None
    top = _Table(raw, "", path)
    obj = top.table("objective")
    objective = obj.get("function", DEFAULT_OBJECTIVE, str)
    train = _train(obj, objective, path)
    space_table = top.table("space")
    space = _space(space_table, _families(space_table))
    samp = top.table("sampler")
    non_negative = (int, lambda v: v >= 0, "an integer >= 0")
    sampler = SamplerConfig(
        name=samp.get("name", "tpe", str, lambda v: v in ("tpe", "random"), '"tpe" or "random"'),
        n_startup_trials=samp.get("n_startup_trials", 10, *non_negative),
        multivariate=samp.get("multivariate", True, bool),
        group=samp.get("group", True, bool),
    )
    samp.done()
    pr = top.table("pruner")
    positive = (int, lambda v: v >= 1, "an integer >= 1")
    pruner = PrunerConfig(
        name=pr.get("name", "hyperband", str, lambda v: v in ("hyperband", "median", "none"),
                    '"hyperband", "median" or "none"'),
        n_startup_trials=pr.get("n_startup_trials", 5, int, lambda v: v >= 0, "an integer >= 0"),
        n_warmup_steps=pr.get("n_warmup_steps", 1, int, lambda v: v >= 0, "an integer >= 0"),
        min_resource=pr.get("min_resource", 1, *positive),
        reduction_factor=pr.get("reduction_factor", 3, int, lambda v: v >= 2, "an integer >= 2"),
    )
    pr.done()
    wk = top.table("workers")
    workers = WorkersConfig(
        heartbeat_interval=wk.get("heartbeat_interval", 30, *positive),
        grace_period=wk.get("grace_period", 120, *positive),
        max_retry=wk.get("max_retry", 3, int, lambda v: v >= 0, "an integer >= 0"),
    )
    wk.done()
    if workers.grace_period <= workers.heartbeat_interval:
        raise wk.error("grace_period", f"> heartbeat_interval ({workers.heartbeat_interval})",
                       workers.grace_period)
    cfg = StudyConfig(
        name=top.get("name", path.stem, str, lambda v: bool(v.strip()), "a non-empty string"),
        path=path,
        objective=objective,
        train=train,
        space=space,
        trials=top.get("trials", 50, *positive),
        seed=top.get("seed", 0, int, lambda v: v >= 0, "an integer >= 0"),
        storage=top.get("storage", None, str) or None,
        description=top.get("description", "", str),
        sampler=sampler,
        pruner=pruner,
        workers=workers,
    )
    top.done()
    return cfg

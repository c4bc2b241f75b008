"""Study files (studies/*.toml) -> frozen dataclasses, validated at load time.

Every mistake names the file and the key: "`<key>` must be <constraint> but got <value>".
Every number is finite and inside the bounds that make it meaningful; where a larger value
could hang a machine or overflow (epochs, trials, batch size, width, subset, lr) the bound is
in LIMITS, and a study file raises one knowingly in its `[limits]` table.
A study file is trusted input (`function` names code that runs); its values are not.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import math
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search import schedules
from search.errors import UserError, closest, must, shown

__all__ = [
    "LIMITS",
    "MAX_NAME",
    "STUDIES_DIR",
    "ParamSpec",
    "PrunerConfig",
    "SamplerConfig",
    "SpaceConfig",
    "StudyConfig",
    "WorkersConfig",
    "check_study_name",
    "load_objective",
    "load_study",
    "study_names",
]

STUDIES_DIR = Path(__file__).resolve().parent.parent / "studies"
DEFAULT_OBJECTIVE = "objectives.classify:train"
_NUM = (int, float)

# Upper bounds past which a value hangs a machine, exhausts its memory or overflows a float.
# A study file raises one knowingly: `[limits]` with e.g. `epochs = 50000`.
LIMITS: dict[str, int | float] = {
    "trials": 100_000,  # finished trials of one study
    "epochs": 10_000,  # epochs of one trial
    "batch_size": 65_536,  # images per optimizer step
    "width": 4_096,  # channels of one block of the default net
    "train_subset": 10_000_000,  # training images (CIFAR has 50,000)
    "lr": 100.0,  # the highest learning rate searched (SGD diverges long before)
}
LR_FLOOR = 1e-10  # a lower learning rate trains nothing; lower still underflows in float32
MIN_SUBSET = 10  # training images: fewer than one per class of CIFAR-10 trains nothing
MAX_SEED = 2**31 - 1  # numpy's and torch's generators take seeds up to here on every platform
MAX_FILE_BYTES = 1 << 20  # a study file is a page of TOML, not a data set
MAX_NAME = 100  # characters of a study name: file names (`<name>-report.html`), every backend
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d{1,3})?")
_SECONDS = {"heartbeat_interval": 3600, "grace_period": 7 * 86400}  # an hour, a week
MAX_RETRY = 100
MIN_TABLE = ('a study file needs at least an [objective] table naming `dataset` (e.g. '
             '"fashion_mnist") or `function` ("package.module:function"); see studies/smoke.toml')


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
    limits: Mapping[str, int | float] = field(default_factory=lambda: dict(LIMITS))

    @property
    def epochs(self) -> int:
        return self.train.epochs

    def with_overrides(self, **train_changes: Any) -> StudyConfig:
        """A copy with objective settings replaced (CLI flags: --epochs, --data-dir, ...).

        Each value is checked as in a study file, named by its flag.
        """
        changes = {k: v for k, v in train_changes.items() if v is not None}
        if not changes:
            return self
        for k, v in changes.items():
            problem = _train_problem(k, v, self.limits)
            if problem:
                raise must(f"--{k.replace('_', '-')}", problem, v, _raise_hint(k, self.path, v))
        return dataclasses.replace(self, train=dataclasses.replace(self.train, **changes))


def study_names() -> list[str]:
    return sorted(p.stem for p in STUDIES_DIR.glob("*.toml"))


def check_study_name(name: str, key: str = "name") -> str:
    """`name` where it is a safe study name (file names, SQLite, PostgreSQL); else one line."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or len(name) > MAX_NAME:
        raise must(key, f"1 to {MAX_NAME} letters, digits, '.', '_' or '-', starting with a "
                   "letter or digit", name, "it names files and database rows")
    return name


def _locate(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix == ".toml" or "/" in name_or_path:
        if not path.is_file():
            raise UserError(f"study file {shown(name_or_path)} does not exist")
        return path
    path = STUDIES_DIR / f"{name_or_path}.toml"
    if not _NAME.fullmatch(name_or_path) or not path.is_file():
        raise UserError(
            f"unknown study {shown(name_or_path)}; known studies: {', '.join(study_names())} "
            "(or pass a path to a .toml file)"
        )
    return path


def _n(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


def _finite(v: Any) -> bool:
    return isinstance(v, _NUM) and not isinstance(v, bool) and math.isfinite(v)


def _raise_hint(k: str, path: Path | None, v: Any) -> str:
    """For a value above its LIMITS bound: how to raise the bound knowingly."""
    values = v if isinstance(v, list | tuple) else [v]
    if k not in LIMITS or not any(_finite(x) and x > LIMITS[k] for x in values):
        return ""
    return f"to go higher knowingly, set `[limits] {k} = ...` in {path.name if path else 'it'}"


_CHECKED = ("epochs", "batch_size", "train_subset", "seed", "width", "val_fraction",
            "label_smoothing", "device", "data_dir", "augment", "dataset", "optimizer", "betas",
            "eps")


def _train_problem(k: str, v: Any, limits: Mapping[str, Any]) -> str | None:
    """What objective setting `k` must be where `v` is wrong for it (None: `v` is fine)."""
    def count(low: int, high: int | float, why: str = "") -> str | None:
        ok = isinstance(v, int) and not isinstance(v, bool) and low <= v <= high
        return None if ok else f"an integer in [{low}, {_n(high)}]{why}"

    if k in ("epochs", "batch_size"):
        return count(1, limits[k])
    if k == "train_subset":
        return count(MIN_SUBSET, limits[k])
    if k == "seed":
        return count(0, MAX_SEED)
    if k == "width":
        ok = isinstance(v, list | tuple) and len(v) == 3 and all(
            isinstance(c, int) and not isinstance(c, bool) and 1 <= c <= limits["width"]
            for c in v)
        return None if ok else f"a list of 3 channel counts in [1, {_n(limits['width'])}]"
    if k == "val_fraction":
        return None if _finite(v) and 0 < v < 1 else "a number between 0 and 1 (exclusive)"
    if k == "label_smoothing":
        return None if _finite(v) and 0 <= v < 1 else "a number in [0, 1)"
    if k == "device":
        ok = isinstance(v, str) and _DEVICE.fullmatch(v)
        return None if ok else '"auto", "cpu", "cuda", "cuda:N" or "mps"'
    if k == "data_dir":
        return None if isinstance(v, str) and v and "\0" not in v else "a directory path"
    if k == "augment":
        return None if isinstance(v, bool) else "true or false"
    if k == "optimizer":  # the schedule-free ones are `validate`'s baselines only
        return None if v in ("sgd", "adamw") else '"sgd" or "adamw"'
    if k == "betas":
        ok = isinstance(v, list | tuple) and len(v) == 2 and all(
            _finite(b) and 0 <= b < 1 for b in v)
        return None if ok else "two numbers in [0, 1), e.g. [0.9, 0.999]"
    if k == "eps":
        return None if _finite(v) and 0 < v < 1 else "a number in (0, 1)"
    return None


# Where each key of a study file lives, for "did you mean" across tables (`epoch` at the top
# is most likely `objective.epochs`).
_SECTIONS: dict[str, tuple[str, ...]] = {
    "": ("name", "description", "trials", "seed", "storage", "objective", "space", "sampler",
         "pruner", "workers", "limits"),
    "objective": ("function", "dataset", "data_dir", "epochs", "batch_size", "width",
                  "val_fraction", "train_subset", "label_smoothing", "seed", "device", "augment",
                  "optimizer", "betas", "eps", "final_test"),
    "space": ("families", "lr", "momentum", "weight_decay", "warmup_epochs", "default_lr",
              "enqueue_defaults"),
    "sampler": ("name", "n_startup_trials", "multivariate", "group"),
    "pruner": ("name", "n_startup_trials", "n_warmup_steps", "min_resource", "reduction_factor"),
    "workers": ("heartbeat_interval", "grace_period", "max_retry"),
    "limits": tuple(LIMITS),
}


def _suggest(where: str, key: str, valid: list[str]) -> str:
    near = closest(key, valid)
    if near is not None:
        return f"did you mean `{f'{where}.{near}' if where else near}`? "
    for section, keys in _SECTIONS.items():
        near = closest(key, keys) if section != where else None
        if near is not None:
            return f"did you mean `{f'{section}.{near}' if section else near}`? "
    return ""


class _Table:
    """A TOML table being read: remembers which keys were used, so unknown ones can fail."""

    def __init__(self, data: Mapping[str, Any], where: str, file: Path) -> None:
        if not isinstance(data, Mapping):
            raise UserError(f"{file}: {must(where, 'a table', data)}")
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
        if ok and isinstance(v, float) and not math.isfinite(v):
            ok = False
        if not ok or (check is not None and not check(v)):
            hint = _raise_hint(k, self.file, v) if self.where != "limits" else ""
            raise self.error(k, what or f"a {getattr(kind, '__name__', kind)}", v, hint)
        return v

    def count(self, k: str, default: int, low: int, high: int | float) -> int:
        """An integer key in [low, high]."""
        return self.get(k, default, int, lambda v: low <= v <= high,
                        f"an integer in [{low}, {_n(high)}]")

    def table(self, k: str) -> _Table:
        self.used.add(k)
        return _Table(self.data.get(k, {}), self.key(k), self.file)

    def done(self, valid: tuple[str, ...] = (), allowed_extra: Callable[[str], bool] | None = None
             ) -> None:
        extra = [k for k in self.data if k not in self.used and k not in valid
                 and not (allowed_extra and allowed_extra(k))]
        if extra:
            names = sorted(self.used | set(valid))
            raise UserError(
                f"{self.file}: unknown key `{self.key(shown(extra[0])[1:-1])}`; "
                f"{_suggest(self.where, extra[0], names)}valid keys: {', '.join(names)}"
            )


def _spec(t: _Table, k: str, default: ParamSpec, log: bool, bounds: schedules.Bounds,
          integer: bool = False) -> ParamSpec:
    """A number (fixed) or {low, high[, log]} table, inside `bounds`."""
    t.used.add(k)
    if k not in t.data:
        return default
    v = t.data[k]
    what = "an integer" if integer else "a finite number"

    def inside(key: str, x: Any) -> float:
        if not _finite(x) or (integer and not float(x).is_integer()):
            raise t.error(key, what, x)
        if not bounds.contains(x):
            raise t.error(key, bounds.text(), x, _raise_hint(k, t.file, x))
        return float(x)

    if not isinstance(v, Mapping):
        if not isinstance(v, _NUM) or isinstance(v, bool):
            raise t.error(k, "a number or a table {low = ..., high = ...}", v)
        x = inside(k, v)
        return ParamSpec(x, x)
    sub = _Table(v, t.key(k), t.file)
    low = sub.get("low", None, _NUM, what="a finite number")
    high = sub.get("high", None, _NUM, what="a finite number")
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


def _families(t: _Table) -> tuple[str, ...]:
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


def _space(t: _Table, fams: tuple[str, ...], epochs: int, limits: Mapping[str, Any]
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
                spec = _spec(sub, p.name, ParamSpec(p.low, p.high, p.log), p.log, p.limits,
                             integer=p.kind in ("int", "cuts"))
                ranges.setdefault(name, {})[p.name] = spec
        sub.done(valid=tuple(p.name for p in params))
    space = SpaceConfig(
        families=fams,
        lr=_spec(t, "lr", base.lr, True, schedules.Bounds(LR_FLOOR, limits["lr"])),
        momentum=_spec(t, "momentum", base.momentum, False,
                       schedules.Bounds(0.0, 1.0, high_open=True)),
        weight_decay=_spec(t, "weight_decay", base.weight_decay, False,
                           schedules.Bounds(0.0, 1.0)),
        warmup_epochs=_spec(t, "warmup_epochs", base.warmup_epochs, False,
                            schedules.Bounds(0.0, float(epochs))),
        ranges=ranges,
        default_lr=t.get("default_lr", base.default_lr, _NUM,
                         lambda v: LR_FLOOR <= v <= limits["lr"],
                         f"a number in [{LR_FLOOR:g}, {limits['lr']:g}]"),
        enqueue_defaults=t.get("enqueue_defaults", True, bool),
    )
    if "default_lr" in t.data and not space.lr.low <= space.default_lr <= space.lr.high:
        raise t.error("default_lr", f"inside the searched lr range [{space.lr.low:g}, "
                      f"{space.lr.high:g}]", space.default_lr)
    t.done(valid=_SECTIONS["space"], allowed_extra=lambda k: k in schedules.SCHEDULES
           and k not in fams)
    for k in t.data:
        if k in schedules.SCHEDULES and k not in fams:
            raise t.error(k, f"a family listed in `{t.key('families')}`", k)
    return space


def _train(t: _Table, objective: str, file: Path, limits: Mapping[str, Any]) -> Any:
    from objectives.classify import TrainConfig

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
        problem = _train_problem(name, v, limits)
        if problem is None and name == "dataset":
            from objectives import data

            custom = objective != DEFAULT_OBJECTIVE
            if not isinstance(v, str) or not (custom or v in data.DATASETS):
                problem = "a string" if custom else f"one of {', '.join(data.DATASETS)}"
        default = getattr(defaults, name)
        if problem is None and name not in _CHECKED and default is not None and (
                type(v) is not type(default) or (isinstance(v, float) and not _finite(v))):
            problem = f"a {'finite ' if isinstance(default, float) else ''}" \
                f"{type(default).__name__}"  # a setting added to TrainConfig later
        if problem:
            raise t.error(name, problem, v, _raise_hint(name, file, v))
        values[name] = (tuple(v) if name == "width" else
                        tuple(float(b) for b in v) if name == "betas" else
                        float(v) if name == "eps" else v)
    options = {k: v for k, v in t.data.items() if k not in known and k != "function"}
    if objective == DEFAULT_OBJECTIVE:
        t.done(valid=_SECTIONS["objective"])
    return TrainConfig(**values, options=options)


def _function_spelling(spec: str, t: _Table) -> None:
    """The spelling of `function` (importing it is load_objective's, before a study exists)."""
    module_name, _, func_name = spec.partition(":")
    ok = all(part.isidentifier() for part in module_name.split(".")) and func_name.isidentifier()
    if not ok:
        raise t.error("function", "package.module:function", spec)


def load_objective(spec: str) -> Callable[..., float]:
    """Import "package.module:function" and check it takes (cfg, schedule, report).

    Called before a study is created, so a typo leaves nothing behind in the store.
    """
    module_name, _, func_name = spec.partition(":")
    if not module_name or not func_name:
        raise UserError(
            f"`objective.function` must look like package.module:function but got {shown(spec)}"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise UserError(f"objective module {module_name!r} cannot be imported: {e}") from None
    except Exception as e:  # SyntaxError, or the module's own code failing on import
        raise UserError(f"objective module {module_name!r} fails on import: "
                        f"{type(e).__name__}: {e}") from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise UserError(f"objective {spec!r}: {module_name} has no function {func_name!r}")
    try:
        inspect.signature(func).bind(None, None, None)
    except TypeError:
        raise UserError(f"objective {spec!r} must take (cfg, schedule, report) but its "
                        f"signature is {func_name}{inspect.signature(func)}") from None
    except ValueError:  # a builtin without a signature: let the call itself tell
        pass
    return func


def _read(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise UserError(f"{path}: cannot be read ({e.strerror})") from None
    if len(raw) > MAX_FILE_BYTES:
        raise UserError(f"{path}: is over {MAX_FILE_BYTES // 1024} KiB; a study file is a page "
                        "of TOML (is this the right file?)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: is not UTF-8 text (byte {e.start}); a study file is TOML "
                        "text") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path}: malformed TOML: {e}") from None
    except RecursionError:
        raise UserError(f"{path}: malformed TOML: nested too deeply") from None


def load_study(name_or_path: str) -> StudyConfig:
    """Read and validate a study file (a name from studies/ or a path)."""
    path = _locate(name_or_path)
    raw = _read(path)
    top = _Table(raw, "", path)
    lim = top.table("limits")
    limits = dict(LIMITS)
    for k, default in LIMITS.items():
        kind = int if isinstance(default, int) else _NUM
        limits[k] = lim.get(k, default, kind, lambda v: _finite(v) and v > 0, "a number > 0")
    lim.done()
    obj = top.table("objective")
    objective = obj.get("function", DEFAULT_OBJECTIVE, str)
    train = _train(obj, objective, path, limits)
    space_table = top.table("space")
    space = _space(space_table, _families(space_table), train.epochs, limits)
    samp = top.table("sampler")
    trials_max = limits["trials"]
    sampler = SamplerConfig(
        name=samp.get("name", "tpe", str, lambda v: v in ("tpe", "random"), '"tpe" or "random"'),
        n_startup_trials=samp.count("n_startup_trials", 10, 0, trials_max),
        multivariate=samp.get("multivariate", True, bool),
        group=samp.get("group", True, bool),
    )
    samp.done()
    pr = top.table("pruner")
    pruner = PrunerConfig(
        name=pr.get("name", "hyperband", str, lambda v: v in ("hyperband", "median", "none"),
                    '"hyperband", "median" or "none"'),
        n_startup_trials=pr.count("n_startup_trials", 5, 0, trials_max),
        n_warmup_steps=pr.count("n_warmup_steps", 1, 0, train.epochs),
        min_resource=pr.count("min_resource", 1, 1, train.epochs),
        reduction_factor=pr.count("reduction_factor", 3, 2, 100),
    )
    pr.done()
    wk = top.table("workers")
    workers = WorkersConfig(
        heartbeat_interval=wk.count("heartbeat_interval", 30, 1, _SECONDS["heartbeat_interval"]),
        grace_period=wk.count("grace_period", 120, 1, _SECONDS["grace_period"]),
        max_retry=wk.count("max_retry", 3, 0, MAX_RETRY),
    )
    wk.done()
    if workers.grace_period <= workers.heartbeat_interval:
        raise wk.error("grace_period", f"> heartbeat_interval ({workers.heartbeat_interval})",
                       workers.grace_period)
    name = top.get("name", path.stem, str)
    try:
        check_study_name(name)
    except UserError as e:
        unnamed = "" if "name" in raw else "; without `name` the file's name is the study's"
        raise UserError(f"{path}: {e}{unnamed}") from None
    cfg = StudyConfig(
        name=name,
        path=path,
        objective=objective,
        train=train,
        space=space,
        trials=top.count("trials", 50, 1, trials_max),
        seed=top.count("seed", 0, 0, MAX_SEED),
        storage=top.get("storage", None, str) or None,
        description=top.get("description", "", str),
        sampler=sampler,
        pruner=pruner,
        workers=workers,
        limits=limits,
    )
    top.done()
    if not ({"dataset", "function"} & set(obj.data)):
        raise UserError(f"{path}: no [objective] table with `dataset` or `function`; "
                        f"{MIN_TABLE}")
    return cfg

"""Study files -> a validated StudyConfig; the objective a study names, imported and checked.

The shipped study files live in the package (search/studies/*.toml, found through
importlib.resources, so an installed schedsearch has them); any other .toml file is given by
its path.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.resources
import inspect
import re
import tomllib
from collections.abc import Callable
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from objectives import import_module
from objectives.optimizers import OPTIMIZERS, study_optimizers
from objectives.settings import TrainConfig
from search import schedules
from search.config.limits import LIMITS, MAX_SEED, NUM, finite
from search.config.settings import (
    DEFAULT_OBJECTIVE,
    ContestConfig,
    PrunerConfig,
    SamplerConfig,
    StudyConfig,
    WorkersConfig,
)
from search.config.tables import Table, families_of, range_spec, space_of, train_of
from search.errors import UserError, must, shown

__all__ = ["MAX_FILE_BYTES", "MAX_NAME", "STUDIES_DIR", "check_holdout", "check_study_name",
           "declared_options", "load_objective", "load_study", "study_names"]

STUDIES_DIR = importlib.resources.files("search") / "studies"  # shipped with the package
MAX_FILE_BYTES = 1 << 20  # a study file is a page of TOML, not a data set
MAX_NAME = 100  # characters of a study name: file names (`<name>-report.html`), every backend
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_SECONDS = {"heartbeat_interval": 3600, "grace_period": 7 * 86400}  # an hour, a week
MAX_RETRY = 100
MIN_TABLE = ('a study file needs at least an [objective] table naming `dataset` (e.g. '
             '"fashion_mnist") or `function` ("package.module:function"); see '
             'search/studies/smoke.toml')


def study_names() -> list[str]:
    """The shipped studies, by name (`--study NAME`)."""
    return sorted(p.name.removesuffix(".toml") for p in STUDIES_DIR.iterdir()
                  if p.name.endswith(".toml"))


def check_study_name(name: str, key: str = "name") -> str:
    """`name` where it is a safe study name (file names, SQLite, PostgreSQL); else one line."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or len(name) > MAX_NAME:
        raise must(key, f"1 to {MAX_NAME} letters, digits, '.', '_' or '-', starting with a "
                   "letter or digit", name, "it names files and database rows")
    return name


def _locate(name_or_path: str) -> Path | Traversable:
    path = Path(name_or_path)
    if path.suffix == ".toml" or "/" in name_or_path:
        if not path.is_file():
            raise UserError(f"study file {shown(name_or_path)} does not exist")
        return path
    shipped = STUDIES_DIR / f"{name_or_path}.toml"
    if not _NAME.fullmatch(name_or_path) or not shipped.is_file():
        raise UserError(
            f"unknown study {shown(name_or_path)}; known studies: {', '.join(study_names())} "
            "(or pass a path to a .toml file)"
        )
    return shipped


def load_objective(spec: str) -> Callable[..., float]:
    """Import "package.module:function" and check it takes (cfg, schedule, report).

    Called before a study is created, so a typo leaves nothing behind in the store.
    """
    module_name, _, func_name = spec.partition(":")
    if not module_name or not func_name:
        raise UserError(
            f"`objective.function` must look like package.module:function but got {shown(spec)}"
        )
    module = import_module(module_name, "objective module")
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


def declared_options(spec: str) -> tuple[str, ...] | None:
    """The `[objective]` options the objective `spec` declares it reads from `cfg.options`
    (its `options` attribute, a tuple of names), or None: it declares none (free-form), or it
    cannot be imported here (load_objective says why before anything is trained or stored).

    A study file's other keys are then refused at load time, with a did-you-mean
    (tables.train_of). A name that is a TrainConfig setting cannot be an option: it never
    reaches `cfg.options`.
    """
    try:
        func = load_objective(spec)
    except UserError:
        return None
    names = getattr(func, "options", None)
    if names is None:
        return None
    module_name, _, func_name = spec.partition(":")
    key = f"{func_name}.options"
    if not isinstance(names, (tuple, list, set, frozenset)) or not all(
            isinstance(n, str) and n for n in names):
        raise must(key, "a tuple of the option names it reads from cfg.options", names,
                   f'e.g. {func_name}.options = ("hidden", "dropout") in {module_name}')
    settings = {f.name for f in dataclasses.fields(TrainConfig)} | {"function"}
    taken = sorted(settings.intersection(names))
    if taken:
        raise must(key, "option names other than the TrainConfig settings", taken[0],
                   f"an [objective] `{taken[0]}` is cfg.{taken[0]}, never in cfg.options; "
                   f"leave it out of {key} in {module_name}")
    return tuple(names)


def check_holdout(cfg: StudyConfig) -> None:
    """`validate` reports "test" scores: its runs set `cfg.holdout = "test"`, and only an
    objective that scores the split `cfg.holdout` names makes them test scores. It says so with
    `holdout = True` on the function (the built-in objective and the adapters do); any other is
    refused in one line, before anything is trained or stored."""
    func = load_objective(cfg.objective)
    declared = getattr(func, "holdout", None)
    if declared is True:
        return
    module_name, _, func_name = cfg.objective.partition(":")
    key = f"{func_name}.holdout"
    if declared is not None:
        raise must(key, "True (the objective scores the split cfg.holdout names)", declared,
                   f"set in {module_name}")
    raise UserError(
        f"validate scores on the test split, but the objective {cfg.objective!r} does not say "
        f"that it reads `cfg.holdout`, so its scores would be validation scores labelled as "
        f'test; make {func_name} train on all the training data and score the test split when '
        f'cfg.holdout == "test", then declare it in {module_name}: {key} = True')


def _read(path: Path | Traversable) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
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


def _default(name: str) -> Any:
    """A StudyConfig field's default (the dataclass is where defaults are written)."""
    return StudyConfig.__dataclass_fields__[name].default


def _horizons(t: Table, epochs: int) -> tuple[int, ...]:
    """`horizons`: whole numbers of epochs, ascending, the last `objective.epochs`."""
    what = (f"a list of epochs, ascending, each >= 1, the last the search's length "
            f"(objective.epochs = {epochs}), e.g. [{max(1, epochs // 4)}, {max(1, epochs // 2)}, "
            f"{epochs}]")
    return tuple(t.get("horizons", [], list, lambda v: not v or (
        all(type(h) is int for h in v) and v == sorted(set(v)) and v[0] >= 1
        and v[-1] == epochs), what))


def _references(t: Table) -> tuple[str, ...]:
    """`references`: reference slots, whole-run cosine among them (it sets the LR scale)."""
    from search.schedules.references import REFERENCES, SLOTS

    first = REFERENCES[0].slot
    got = t.get("references", [], list, lambda v: all(s in SLOTS for s in v) and first in v
                and len(set(v)) == len(v),
                f"a list of distinct names from {', '.join(SLOTS)}, {first!r} among them (it "
                "sets the LR scale)")
    return tuple(s for s in SLOTS if s in got)


def _contest(top: Table, trials_max: int | float, epochs: int) -> ContestConfig:
    t, d = top.table("contest"), ContestConfig()
    out = ContestConfig(
        shape_trials=t.count("shape_trials", d.shape_trials, 0, trials_max),
        finalists=t.count("finalists", d.finalists, 0, 100),
        max_seeds=t.count("max_seeds", d.max_seeds, 1, 100),
        noise_sd=t.get("noise_sd", d.noise_sd, NUM, lambda v: finite(v) and 0 < v < 1,
                       "a number in (0, 1)"),
        lr_factor=range_spec(t, "lr_factor", d.lr_factor, True,
                             schedules.Bounds(0.0, 1e3, low_open=True)),
        horizons=_horizons(t, epochs),
        equivalence=float(t.get("equivalence", d.equivalence, NUM,
                                lambda v: finite(v) and v >= 0,
                                "a number >= 0 (the race's equivalence margin, in the "
                                "metric's units; 0: none)")),
        references=_references(t),
    )
    t.done()
    if not out.lr_factor.low <= 1.0 <= out.lr_factor.high:
        raise t.error("lr_factor", "a range that holds 1 (the tuned scale itself)",
                      f"{out.lr_factor.low:g}..{out.lr_factor.high:g}")
    return out


def load_study(name_or_path: str) -> StudyConfig:
    """Read and validate a study file (a name from studies/ or a path)."""
    path = _locate(name_or_path)
    raw = _read(path)
    top = Table(raw, "", path)
    lim = top.table("limits")
    limits = dict(LIMITS)
    for k, default in LIMITS.items():
        kind = int if isinstance(default, int) else NUM
        limits[k] = lim.get(k, default, kind, lambda v: finite(v) and v > 0, "a number > 0")
    lim.done()
    obj = top.table("objective")
    objective = obj.get("function", DEFAULT_OBJECTIVE, str)
    train = train_of(obj, objective, path, limits, declared_options)
    space_table = top.table("space")
    space = space_of(space_table, families_of(space_table), train.epochs, limits)
    for beta in ("beta1", "beta2"):
        if getattr(space, beta) is not None and not OPTIMIZERS[train.optimizer].adam:
            adam = " or ".join(f'"{k}"' for k in study_optimizers() if OPTIMIZERS[k].adam)
            raise space_table.error(
                beta, f"set with `objective.optimizer = {adam}` only (AdamW's betas)",
                space_table.data[beta])
    samp, ds = top.table("sampler"), SamplerConfig()  # ds, dp, dw: the defaults, written once
    trials_max = limits["trials"]
    sampler = SamplerConfig(
        name=samp.get("name", ds.name, str, lambda v: v in ("tpe", "random"),
                      '"tpe" or "random"'),
        n_startup_trials=samp.count("n_startup_trials", ds.n_startup_trials, 0, trials_max),
        multivariate=samp.get("multivariate", ds.multivariate, bool),
        group=samp.get("group", ds.group, bool),
    )
    samp.done()
    pr, dp = top.table("pruner"), PrunerConfig()
    pruner = PrunerConfig(
        name=pr.get("name", dp.name, str, lambda v: v in ("hyperband", "median", "none"),
                    '"hyperband", "median" or "none"'),
        n_startup_trials=pr.count("n_startup_trials", dp.n_startup_trials, 0, trials_max),
        n_warmup_steps=pr.count("n_warmup_steps", dp.n_warmup_steps, 0, train.epochs),
        min_resource=pr.count("min_resource", dp.min_resource, 1, train.epochs),
        reduction_factor=pr.count("reduction_factor", dp.reduction_factor, 2, 100),
    )
    pr.done()
    wk, dw = top.table("workers"), WorkersConfig()
    workers = WorkersConfig(
        heartbeat_interval=wk.count("heartbeat_interval", dw.heartbeat_interval, 1,
                                    _SECONDS["heartbeat_interval"]),
        grace_period=wk.count("grace_period", dw.grace_period, 1, _SECONDS["grace_period"]),
        max_retry=wk.count("max_retry", dw.max_retry, 0, MAX_RETRY),
    )
    wk.done()
    if workers.grace_period <= workers.heartbeat_interval:
        raise wk.error("grace_period", f"> heartbeat_interval ({workers.heartbeat_interval})",
                       workers.grace_period)
    contest = _contest(top, trials_max, train.epochs) if "contest" in raw else None
    name = top.get("name", Path(path.name).stem, str)
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
        trials=top.count("trials", _default("trials"), 1, trials_max),
        seed=top.count("seed", _default("seed"), 0, MAX_SEED),
        storage=top.get("storage", None, str) or None,
        description=top.get("description", "", str),
        sampler=sampler,
        pruner=pruner,
        workers=workers,
        contest=contest,
        limits=limits,
    )
    top.done()
    if contest is not None and contest.budget_problem(cfg.trials):
        raise top.error("trials", contest.budget_problem(cfg.trials), cfg.trials)
    if not ({"dataset", "function"} & set(obj.data)):
        raise UserError(f"{path}: no [objective] table with `dataset` or `function`; "
                        f"{MIN_TABLE}")
    return cfg

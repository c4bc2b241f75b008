"""Schedule catalog: family name -> how to build torch's scheduler, how to step it, what to search.

Every family is built from `torch.optim.lr_scheduler` classes; composites are made of
LambdaLR / LinearLR / ConstantLR / CosineAnnealingLR / SequentialLR. Nothing here
re-implements a scheduler's math, and nothing here imports optuna.

Budget-free schedules. A `ScheduleConfig` describes the LR as a function of the *fraction of
training*: lengths are fractions of the run, decays are what is reached by the end of the
run, and an added warmup is a fraction of the run. `resolve(schedule, epochs,
steps_per_epoch)` is the one place that turns it into the exact kwargs torch receives for a
budget. Moving a schedule to another training length (`best --epochs`, `validate`, every
export) is therefore nothing but resolving it for that budget: epoch and iteration counts
scale, per-step factors and rates are converted so that the same LR is reached at the same
fraction of training, and a warmup stays the same fraction of the run. Counts are rounded
to whole scheduler steps, so two budgets agree up to one scheduler step of the shorter one
around each boundary.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch.optim import Optimizer
from torch.optim import lr_scheduler as lrs

__all__ = [
    "EPOCH",
    "ITERATION",
    "PLATEAU",
    "SCHEDULES",
    "TRACE_POINTS",
    "Bounds",
    "Built",
    "Family",
    "Param",
    "ScheduleConfig",
    "build",
    "family",
    "lit",
    "milestones",
    "resolve",
]

# How a scheduler is stepped.
EPOCH = "epoch"  # scheduler.step() once after every epoch
ITERATION = "iteration"  # scheduler.step() after every optimizer.step()
PLATEAU = "plateau"  # scheduler.step(val_loss) after every epoch

WARMUP_START_FACTOR = 0.01  # LR at the first warmup step, as a fraction of the base LR
TRACE_POINTS = 256  # the applied LR is recorded at about this many optimizer steps per run


@dataclass(frozen=True)
class Bounds:
    """The values a parameter may take at all (torch's own constraints, or where a value stops
    meaning anything); a study file's range for the parameter must lie inside."""

    low: float
    high: float
    low_open: bool = False  # low itself excluded
    high_open: bool = False

    def contains(self, v: float) -> bool:
        above = v > self.low if self.low_open else v >= self.low
        below = v < self.high if self.high_open else v <= self.high
        return above and below

    def text(self) -> str:
        return (f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}"
                f"{')' if self.high_open else ']'}")


UNIT = Bounds(0.0, 1.0, low_open=True)  # (0, 1]: fractions of the run, factors that decay
OPEN_UNIT = Bounds(0.0, 1.0, low_open=True, high_open=True)  # (0, 1)
FACTOR = Bounds(0.0, 1.0, high_open=True)  # [0, 1): eta_min as a fraction of the base LR
MAX_MILESTONES = 8


@dataclass(frozen=True)
class Param:
    """One searched parameter of a family. kind: float | int | epochs | cuts.

    `epochs` parameters are searched as whole epochs of the searched budget, with ranges given
    as fractions of it (low=0.25, high=0.5 with 20 epochs searches 5..10); the schedule keeps
    them as fractions of the run, so they scale with any budget. `cuts` are integers that
    count places inside the run (MultiStepLR's milestones): at most epochs - 1.
    """

    name: str
    kind: str
    low: float = 0.0
    high: float = 1.0
    log: bool = False
    # active only when params[requires] >= index (MultiStepLR's gap_i needs n >= i)
    requires: str = ""
    index: int = 0
    limits: Bounds = UNIT  # what a study file's range may span (see Bounds)

    def epoch_range(self, epochs: int) -> tuple[int, int]:
        low = max(1, round(self.low * epochs)) if self.low > 0 else 0
        return low, max(low, round(self.high * epochs))


@dataclass(frozen=True)
class ScheduleConfig:
    """What a trial trains with: a family, its budget-free parameters, the optimizer knobs.

    `params` hold the family's parameters without the `<Family>.` prefix (epoch-kind ones as
    fractions of the run). `warmup` is the fraction of the run spent in an added linear
    warmup (0: none). `listener`, when set, is called with the `Built` schedule once it exists
    (the runner uses it to record the exact kwargs without the objective knowing about it).
    """

    family: str
    params: Mapping[str, Any] = field(default_factory=dict)
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup: float = 0.0
    listener: Callable[[Built], None] | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able; `from_dict` gives the same schedule back (the trial's record)."""
        return {"family": self.family, "params": dict(self.params), "lr": self.lr,
                "momentum": self.momentum, "weight_decay": self.weight_decay,
                "warmup": self.warmup}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ScheduleConfig:
        return cls(family=d["family"], params=dict(d["params"]), lr=float(d["lr"]),
                   momentum=float(d["momentum"]), weight_decay=float(d["weight_decay"]),
                   warmup=float(d["warmup"]))


@dataclass(frozen=True)
class Family:
    name: str
    interval: str
    make: Callable[..., Any]  # (optimizer, **kwargs) -> scheduler
    # (params, lr, horizon) -> exact torch kwargs; `horizon` counts the scheduler steps the
    # schedule spans: epochs for epoch-stepped families, optimizer steps for per-iteration
    # ones and for any family after an added warmup (then it is the steps after the warmup).
    kwargs: Callable[[Mapping[str, Any], float, int], dict[str, Any]]
    params: tuple[Param, ...]
    code: Callable[[Mapping[str, Any]], str]  # kwargs -> Python expression building it
    own_warmup: bool = False  # has a warmup phase of its own (no extra warmup is added)
    doc: str = ""

    @property
    def warmup_ok(self) -> bool:
        return not self.own_warmup and self.interval != PLATEAU


@dataclass
class Built:
    """A scheduler ready to step, the exact kwargs it was made with, and the LRs it applied."""

    family: str
    scheduler: Any
    interval: str
    kwargs: dict[str, Any]
    warmup: dict[str, Any] | None  # LinearLR kwargs of the added warmup, in iterations
    epochs: int = 0  # the budget the kwargs were resolved for
    steps_per_epoch: int = 0  # optimizer steps per epoch
    # the LR each optimizer step applied, at steps 0, every, 2 * every, ... (read from the
    # optimizer's param_groups when the step is taken, as Lightning's LearningRateMonitor does)
    trace: list[float] = field(default_factory=list)
    every: int = 1
    schedule: ScheduleConfig | None = None  # what was resolved (budget-free)
    _steps: int = 0

    def after_batch(self) -> None:
        """Call after every optimizer.step(), before anything else changes the LR."""
        if self._steps % self.every == 0:
            self.trace.append(float(self.scheduler.optimizer.param_groups[0]["lr"]))
        self._steps += 1
        if self.interval == ITERATION:
            self.scheduler.step()

    def after_epoch(self, val_loss: float) -> None:
        """Call once after every epoch's validation."""
        if self.interval == EPOCH:
            self.scheduler.step()
        elif self.interval == PLATEAU:
            self.scheduler.step(val_loss)


# 1. Composites, each a small function over torch classes (export prints the same code).


def constant(optimizer: Optimizer) -> lrs.LRScheduler:
    return lrs.LambdaLR(optimizer, lambda step: 1.0)


def inverse_time_decay(optimizer: Optimizer, decay: float) -> lrs.LRScheduler:
    # lr = base_lr / (1 + decay * iteration), stepped per iteration
    return lrs.LambdaLR(optimizer, lambda it: 1.0 / (1.0 + decay * it))


def warmup_cosine(
    optimizer: Optimizer, warmup_iters: int, total_iters: int, eta_min: float
) -> lrs.LRScheduler:
    warm = lrs.LinearLR(optimizer, start_factor=WARMUP_START_FACTOR, total_iters=warmup_iters)
    cos = lrs.CosineAnnealingLR(optimizer, T_max=total_iters - warmup_iters, eta_min=eta_min)
    return lrs.SequentialLR(optimizer, [warm, cos], milestones=[warmup_iters])


def warmup_stable_decay(
    optimizer: Optimizer, warmup_iters: int, stable_iters: int, decay_iters: int, end_factor: float
) -> lrs.LRScheduler:
    warm = lrs.LinearLR(optimizer, start_factor=WARMUP_START_FACTOR, total_iters=warmup_iters)
    stable = lrs.ConstantLR(optimizer, factor=1.0, total_iters=stable_iters)
    decay = lrs.LinearLR(
        optimizer, start_factor=1.0, end_factor=end_factor, total_iters=decay_iters
    )
    return lrs.SequentialLR(
        optimizer, [warm, stable, decay], milestones=[warmup_iters, warmup_iters + stable_iters]
    )


# 2. Code text for export: the same constructions, written out for a person to paste.

_S = "torch.optim.lr_scheduler"


def lit(v: Any) -> str:
    """A Python literal for a kwarg value; floats in their shortest exact form (repr), so the
    pasted code applies exactly the LRs the trial applied."""
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(lit(x) for x in v) + "]"
    return repr(v)


def _call(cls: str, kwargs: Mapping[str, Any]) -> str:
    args = ", ".join(f"{k}={lit(v)}" for k, v in kwargs.items())
    return f"{_S}.{cls}(optimizer{', ' if args else ''}{args})"


def _code_constant(kw: Mapping[str, Any]) -> str:
    return f"{_S}.LambdaLR(optimizer, lambda step: 1.0)"


def _code_inverse_time(kw: Mapping[str, Any]) -> str:
    return f"{_S}.LambdaLR(optimizer, lambda it: 1.0 / (1.0 + {lit(kw['decay'])} * it))"


def _code_warmup_cosine(kw: Mapping[str, Any]) -> str:
    w, t = kw["warmup_iters"], kw["total_iters"]
    return (
        f"{_S}.SequentialLR(optimizer, [\n"
        f"    {_S}.LinearLR(optimizer, start_factor={lit(WARMUP_START_FACTOR)}, "
        f"total_iters={lit(w)}),\n"
        f"    {_S}.CosineAnnealingLR(optimizer, T_max={lit(t - w)}, "
        f"eta_min={lit(kw['eta_min'])}),\n"
        f"], milestones=[{lit(w)}])"
    )


def _code_wsd(kw: Mapping[str, Any]) -> str:
    w, s, d = kw["warmup_iters"], kw["stable_iters"], kw["decay_iters"]
    return (
        f"{_S}.SequentialLR(optimizer, [\n"
        f"    {_S}.LinearLR(optimizer, start_factor={lit(WARMUP_START_FACTOR)}, "
        f"total_iters={lit(w)}),\n"
        f"    {_S}.ConstantLR(optimizer, factor=1.0, total_iters={lit(s)}),\n"
        f"    {_S}.LinearLR(optimizer, start_factor=1.0, end_factor={lit(kw['end_factor'])}, "
        f"total_iters={lit(d)}),\n"
        f"], milestones=[{lit(w)}, {lit(w + s)}])"
    )


def _torch_code(cls: str) -> Callable[[Mapping[str, Any]], str]:
    return lambda kw: _call(cls, kw)


# 3. The catalog. kwargs(params, lr, horizon) -> exact torch kwargs.


def _count(frac: float, horizon: int, low: int = 1) -> int:
    """A length given as a fraction of the run, in whole scheduler steps of this horizon."""
    return max(low, min(horizon, round(frac * horizon)))


def milestones(p: Mapping[str, Any], horizon: int) -> list[int]:
    """MultiStepLR's milestones from ordered gaps: `n` distinct steps inside the run.

    n_milestones = n cuts the run at the cumulative proportions of the n + 1 positive gaps
    gap_0 .. gap_n (the last one is the tail after the last milestone). Positions are ordered
    by construction, so no two parameters are interchangeable labels; after rounding to whole
    steps, collisions are moved apart. A run of fewer than n + 1 steps keeps n = horizon - 1.
    """
    if horizon < 2:
        return []  # no room for a milestone inside a one-step run
    n = min(int(p["n_milestones"]), horizon - 1)
    gaps = [float(p[f"gap_{i}"]) for i in range(int(p["n_milestones"]) + 1)]
    total = sum(gaps)  # gaps past a reduced n belong to the tail
    out, acc = [], 0.0
    for i in range(n):
        acc += gaps[i]
        out.append(min(horizon - 1, max(1, round(acc / total * horizon))))
    for i in range(1, n):  # distinct, ascending, and room left for the ones after
        out[i] = max(out[i], out[i - 1] + 1)
    for i in range(n - 1, -1, -1):
        out[i] = min(out[i], horizon - (n - i))
    return sorted(set(out))


def _phases(total: int, warmup_frac: float, decay_frac: float = 0.0) -> tuple[int, int, int]:
    """Split `total` optimizer steps into warmup, stable and decay phases."""
    warm = min(total - 1, max(1, round(warmup_frac * total)))
    decay = min(total - warm, max(1, round(decay_frac * total))) if decay_frac > 0 else 0
    return warm, total - warm - decay, decay


def _wc_kwargs(p: Mapping[str, Any], lr: float, h: int) -> dict[str, Any]:
    warm, _, _ = _phases(h, p["warmup_frac"])
    return {"warmup_iters": warm, "total_iters": h, "eta_min": lr * p["eta_min_factor"]}


def _wsd_kwargs(p: Mapping[str, Any], lr: float, h: int) -> dict[str, Any]:
    warm, stable, decay = _phases(h, p["warmup_frac"], p["decay_frac"])
    return {
        "warmup_iters": warm,
        "stable_iters": stable,
        "decay_iters": decay,
        "end_factor": p["end_factor"],
    }


_FRACTION = Param("eta_min_factor", "float", 1e-4, 0.1, log=True, limits=FACTOR)
_GAMMA = Param("gamma", "float", 0.05, 0.7, log=True)
# gap_i is active when n_milestones >= i: n milestones need n + 1 gaps
_GAPS = tuple(Param(f"gap_{i}", "float", 0.1, 1.0, requires="n_milestones" if i > 1 else "",
                    index=i, limits=Bounds(0.01, 100)) for i in range(MAX_MILESTONES + 1))

SCHEDULES: dict[str, Family] = {
    f.name: f
    for f in [
        Family(
            "Constant", EPOCH, constant, lambda p, lr, h: {}, (), _code_constant,
            doc="the base LR throughout",
        ),
        Family(
            "StepLR", EPOCH, lrs.StepLR,
            lambda p, lr, h: {"step_size": _count(p["step_size"], h), "gamma": p["gamma"]},
            (Param("step_size", "epochs", 0.1, 0.5), _GAMMA),
            _torch_code("StepLR"),
        ),
        Family(
            "MultiStepLR", EPOCH, lrs.MultiStepLR,
            lambda p, lr, h: {"milestones": milestones(p, h), "gamma": p["gamma"]},
            (Param("n_milestones", "cuts", 1, 3, limits=Bounds(1, MAX_MILESTONES)), *_GAPS,
             _GAMMA),
            _torch_code("MultiStepLR"),
            doc="n milestones at ordered gaps of the run",
        ),
        Family(
            "ExponentialLR", EPOCH, lrs.ExponentialLR,
            # searched as the LR factor reached at the end of the run, so ranges fit any budget
            lambda p, lr, h: {"gamma": p["final_factor"] ** (1.0 / h)},
            (Param("final_factor", "float", 1e-3, 0.5, log=True),),
            _torch_code("ExponentialLR"),
        ),
        Family(
            "CosineAnnealingLR", EPOCH, lrs.CosineAnnealingLR,
            lambda p, lr, h: {"T_max": _count(p["T_max"], h), "eta_min": lr * p["eta_min_factor"]},
            (Param("T_max", "epochs", 0.5, 1.0), _FRACTION),
            _torch_code("CosineAnnealingLR"),
        ),
        Family(
            "ReduceLROnPlateau", PLATEAU, lrs.ReduceLROnPlateau,
            lambda p, lr, h: {
                "mode": "min", "factor": p["factor"], "patience": _count(p["patience"], h, 0),
            },
            (
                Param("factor", "float", 0.1, 0.7, limits=OPEN_UNIT),
                Param("patience", "epochs", 0.0, 0.2, limits=Bounds(0, 1)),
            ),
            _torch_code("ReduceLROnPlateau"),
        ),
        Family(
            "OneCycleLR", ITERATION, lrs.OneCycleLR,
            lambda p, lr, h: {
                "max_lr": lr, "total_steps": h, "pct_start": p["pct_start"],
                "div_factor": p["div_factor"], "final_div_factor": p["final_div_factor"],
            },
            (
                Param("pct_start", "float", 0.1, 0.5, limits=OPEN_UNIT),
                Param("div_factor", "float", 5.0, 100.0, log=True, limits=Bounds(1, 1e4)),
                Param("final_div_factor", "float", 10.0, 1e4, log=True,
                      limits=Bounds(1, 1e6)),
            ),
            _torch_code("OneCycleLR"),
            own_warmup=True,
        ),
        Family(
            "CosineAnnealingWarmRestarts", EPOCH, lrs.CosineAnnealingWarmRestarts,
            lambda p, lr, h: {
                "T_0": _count(p["T_0"], h), "T_mult": int(p["T_mult"]),
                "eta_min": lr * p["eta_min_factor"],
            },
            (
                Param("T_0", "epochs", 0.1, 0.5),
                Param("T_mult", "int", 1, 2, limits=Bounds(1, 4)),
                _FRACTION,
            ),
            _torch_code("CosineAnnealingWarmRestarts"),
        ),
        Family(
            "PolynomialLR", EPOCH, lrs.PolynomialLR,
            lambda p, lr, h: {"total_iters": h, "power": p["power"]},
            (Param("power", "float", 0.5, 3.0, limits=Bounds(0, 10, low_open=True)),),
            _torch_code("PolynomialLR"),
        ),
        Family(
            "InverseTimeDecay", ITERATION, inverse_time_decay,
            # searched as the LR factor reached at the end of the run: 1 / (1 + decay * h)
            lambda p, lr, h: {"decay": (1.0 / p["final_factor"] - 1.0) / h},
            (Param("final_factor", "float", 0.01, 0.99, log=True),),
            _code_inverse_time,
            doc="lr / (1 + decay * iteration)",
        ),
        Family(
            "WarmupCosine", ITERATION, warmup_cosine, _wc_kwargs,
            (Param("warmup_frac", "float", 0.01, 0.3, limits=OPEN_UNIT), _FRACTION),
            _code_warmup_cosine,
            own_warmup=True,
            doc="linear warmup, then cosine to eta_min",
        ),
        Family(
            "WarmupStableDecay", ITERATION, warmup_stable_decay, _wsd_kwargs,
            (
                Param("warmup_frac", "float", 0.01, 0.2, limits=OPEN_UNIT),
                Param("decay_frac", "float", 0.1, 0.6, limits=OPEN_UNIT),
                Param("end_factor", "float", 1e-3, 0.1, log=True, limits=Bounds(0, 1)),
            ),
            _code_wsd,
            own_warmup=True,
            doc="linear warmup, constant, then linear decay",
        ),
    ]
}


def family(name: str) -> Family:
    """The catalog entry for `name`; an unknown name lists the valid ones."""
    try:
        return SCHEDULES[name]
    except KeyError:
        raise ValueError(
            f"scheduler must be one of {', '.join(SCHEDULES)} but got {name!r}"
        ) from None


# 4. Resolving and building: the one path from a schedule to torch, for any budget.


def resolve(schedule: ScheduleConfig, epochs: int, steps_per_epoch: int) -> Built:
    """The exact kwargs for `epochs` x `steps_per_epoch`, without building anything.

    1. An added warmup takes round(warmup x all steps) optimizer steps (families with a
       warmup of their own and ReduceLROnPlateau get none).
    2. The family's schedule spans the rest of the run: all epochs when it steps per epoch,
       else the optimizer steps after the warmup, so it ends where the family ends (cosine
       at eta_min, polynomial at 0) when training ends.
    """
    fam = family(schedule.family)
    total = epochs * steps_per_epoch
    warm = min(total - 1, round(schedule.warmup * total)) if fam.warmup_ok else 0
    if warm > 0:
        warmup: dict[str, Any] | None = {"start_factor": WARMUP_START_FACTOR, "total_iters": warm}
        interval, horizon = ITERATION, total - warm
    else:
        warmup, interval = None, fam.interval
        horizon = total if interval == ITERATION else epochs
    kwargs = fam.kwargs(schedule.params, schedule.lr, horizon)
    every = max(1, math.ceil(total / TRACE_POINTS))
    return Built(fam.name, None, interval, kwargs, warmup, epochs, steps_per_epoch, every=every,
                 schedule=dataclasses.replace(schedule, listener=None))


def build(
    optimizer: Optimizer, schedule: ScheduleConfig, steps_per_epoch: int, epochs: int
) -> Built:
    """torch's scheduler for `schedule` on `optimizer`, and how to step it."""
    built = resolve(schedule, epochs, steps_per_epoch)
    fam = family(schedule.family)
    if built.warmup is None:
        built.scheduler = fam.make(optimizer, **built.kwargs)
    else:
        warm = lrs.LinearLR(optimizer, **built.warmup)
        main = fam.make(optimizer, **built.kwargs)
        built.scheduler = lrs.SequentialLR(
            optimizer, [warm, main], milestones=[built.warmup["total_iters"]]
        )
    if schedule.listener is not None:
        schedule.listener(built)
    return built

"""Schedule catalog: family name -> how to build torch's scheduler, how to step it, what to search.

Every family is built from `torch.optim.lr_scheduler` classes; composites are made of
LambdaLR / LinearLR / ConstantLR / CosineAnnealingLR / SequentialLR. Nothing here
re-implements a scheduler's math, and nothing here imports optuna.

Units. A family's *searched* parameters are budget-free (epoch counts, fractions of the
run, rates); `resolve` turns them into the exact kwargs torch receives for a given budget
(epochs, optimizer steps per epoch). Each kwarg carries a unit so that `rescale` can move a
schedule to another training length while keeping its shape over the run.
"""

from __future__ import annotations

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
    "Bounds",
    "Built",
    "Family",
    "Param",
    "ScheduleConfig",
    "build",
    "family",
    "lit",
    "rescale",
    "resolve",
    "units_of",
]

# How a scheduler is stepped.
EPOCH = "epoch"  # scheduler.step() once after every epoch
ITERATION = "iteration"  # scheduler.step() after every optimizer.step()
PLATEAU = "plateau"  # scheduler.step(val_loss) after every epoch

# Units of a kwarg, used by `rescale` and by warmup's conversion to iterations.
EPOCHS = "epochs"  # a count of epochs (step_size, milestones, T_max, ...)
ITERS = "iterations"  # a count of optimizer steps
PER_EPOCH = "factor_per_epoch"  # multiplies the LR once per epoch (ExponentialLR.gamma)
PER_ITER_FACTOR = "factor_per_iteration"  # multiplies the LR once per optimizer step
PER_ITER = "rate_per_iteration"  # additive rate per optimizer step (InverseTimeDecay.decay)

WARMUP_START_FACTOR = 0.01  # LR at the first warmup step, as a fraction of the base LR


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


@dataclass(frozen=True)
class Param:
    """One searched parameter of a family. kind: float | int | epochs | categorical.

    `epochs` parameters are counts of epochs whose range is given as fractions of the epoch
    budget (low=0.25, high=0.5 with 20 epochs searches 5..10), so ranges scale with budget.
    """

    name: str
    kind: str
    low: float = 0.0
    high: float = 1.0
    log: bool = False
    # active only when params[requires] > index (MultiStepLR's milestone_i needs n > i)
    requires: str = ""
    index: int = 0
    limits: Bounds = UNIT  # what a study file's range may span (see Bounds)

    def epoch_range(self, epochs: int) -> tuple[int, int]:
        low = max(1, round(self.low * epochs)) if self.low > 0 else 0
        return low, max(low, round(self.high * epochs))


@dataclass(frozen=True)
class ScheduleConfig:
    """What a trial asks for: a family, its searched parameters, and the shared optimizer knobs.

    `params` hold the family's parameters without the `<Family>.` prefix, budget-free.
    `listener`, when set, is called with the `Built` schedule once it exists (the runner
    uses it to record the exact kwargs without the objective knowing about it).
    """

    family: str
    params: Mapping[str, Any] = field(default_factory=dict)
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 0.0
    listener: Callable[[Built], None] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Family:
    name: str
    interval: str
    make: Callable[..., Any]  # (optimizer, **kwargs) -> scheduler
    kwargs: Callable[[Mapping[str, Any], float, int, int], dict[str, Any]]  # params, lr, E, S
    units: Mapping[str, str]
    params: tuple[Param, ...]
    code: Callable[[Mapping[str, Any]], str]  # kwargs -> Python expression building it
    own_warmup: bool = False  # has a warmup phase of its own (no extra warmup is added)
    doc: str = ""

    @property
    def warmup_ok(self) -> bool:
        return not self.own_warmup and self.interval != PLATEAU


@dataclass
class Built:
    """A scheduler ready to step, and the exact kwargs it was made with."""

    family: str
    scheduler: Any
    interval: str
    kwargs: dict[str, Any]
    warmup: dict[str, Any] | None  # LinearLR kwargs of the added warmup, in iterations
    epochs: int = 0  # the budget the kwargs were resolved for
    steps_per_epoch: int = 0  # optimizer steps per epoch

    def after_batch(self) -> None:
        """Call after every optimizer.step()."""
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
    """A Python literal for a kwarg value; floats to 8 significant digits, still floats."""
    if isinstance(v, float):
        text = f"{v:.8g}"
        return text if any(c in text for c in ".en") else text + ".0"
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


# 3. The catalog. kwargs(params, lr, epochs, steps_per_epoch) -> exact torch kwargs.


def _milestones(p: Mapping[str, Any], epochs: int) -> list[int]:
    n = int(p["n_milestones"])
    fracs = sorted(float(p[f"milestone_{i}"]) for i in range(n))
    return sorted({min(epochs - 1, max(1, round(f * epochs))) for f in fracs}) or [1]


def _phases(total: int, warmup_frac: float, decay_frac: float = 0.0) -> tuple[int, int, int]:
    """Split `total` optimizer steps into warmup, stable and decay phases."""
    warm = min(total - 1, max(1, round(warmup_frac * total)))
    decay = min(total - warm, max(1, round(decay_frac * total))) if decay_frac > 0 else 0
    return warm, total - warm - decay, decay


def _wc_kwargs(p: Mapping[str, Any], lr: float, E: int, S: int) -> dict[str, Any]:
    warm, _, _ = _phases(E * S, p["warmup_frac"])
    return {"warmup_iters": warm, "total_iters": E * S, "eta_min": lr * p["eta_min_factor"]}


def _wsd_kwargs(p: Mapping[str, Any], lr: float, E: int, S: int) -> dict[str, Any]:
    warm, stable, decay = _phases(E * S, p["warmup_frac"], p["decay_frac"])
    return {
        "warmup_iters": warm,
        "stable_iters": stable,
        "decay_iters": decay,
        "end_factor": p["end_factor"],
    }


_FRACTION = Param("eta_min_factor", "float", 1e-4, 0.1, log=True, limits=FACTOR)

SCHEDULES: dict[str, Family] = {
    f.name: f
    for f in [
        Family(
            "Constant", EPOCH, constant, lambda p, lr, E, S: {}, {}, (), _code_constant,
            doc="the base LR throughout",
        ),
        Family(
            "StepLR", EPOCH, lrs.StepLR,
            lambda p, lr, E, S: {"step_size": int(p["step_size"]), "gamma": p["gamma"]},
            {"step_size": EPOCHS},
            (Param("step_size", "epochs", 0.1, 0.5), Param("gamma", "float", 0.05, 0.7, log=True)),
            _torch_code("StepLR"),
        ),
        Family(
            "MultiStepLR", EPOCH, lrs.MultiStepLR,
            lambda p, lr, E, S: {"milestones": _milestones(p, E), "gamma": p["gamma"]},
            {"milestones": EPOCHS},
            (
                Param("n_milestones", "int", 1, 3, limits=Bounds(1, 8)),
                Param("milestone_0", "float", 0.2, 0.95),
                Param("milestone_1", "float", 0.2, 0.95, requires="n_milestones", index=1),
                Param("milestone_2", "float", 0.2, 0.95, requires="n_milestones", index=2),
                Param("gamma", "float", 0.05, 0.7, log=True),
            ),
            _torch_code("MultiStepLR"),
        ),
        Family(
            "ExponentialLR", EPOCH, lrs.ExponentialLR,
            # searched as the LR factor reached at the end of the run, so ranges fit any budget
            lambda p, lr, E, S: {"gamma": p["final_factor"] ** (1.0 / E)},
            {"gamma": PER_EPOCH},
            (Param("final_factor", "float", 1e-3, 0.5, log=True),),
            _torch_code("ExponentialLR"),
        ),
        Family(
            "CosineAnnealingLR", EPOCH, lrs.CosineAnnealingLR,
            lambda p, lr, E, S: {"T_max": int(p["T_max"]), "eta_min": lr * p["eta_min_factor"]},
            {"T_max": EPOCHS},
            (Param("T_max", "epochs", 0.5, 1.0), _FRACTION),
            _torch_code("CosineAnnealingLR"),
        ),
        Family(
            "ReduceLROnPlateau", PLATEAU, lrs.ReduceLROnPlateau,
            lambda p, lr, E, S: {
                "mode": "min", "factor": p["factor"], "patience": int(p["patience"]),
            },
            {"patience": EPOCHS},
            (
                Param("factor", "float", 0.1, 0.7, limits=OPEN_UNIT),
                Param("patience", "epochs", 0.0, 0.2, limits=Bounds(0, 1)),
            ),
            _torch_code("ReduceLROnPlateau"),
        ),
        Family(
            "OneCycleLR", ITERATION, lrs.OneCycleLR,
            lambda p, lr, E, S: {
                "max_lr": lr, "total_steps": E * S, "pct_start": p["pct_start"],
                "div_factor": p["div_factor"], "final_div_factor": p["final_div_factor"],
            },
            {"total_steps": ITERS},
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
            lambda p, lr, E, S: {
                "T_0": int(p["T_0"]), "T_mult": int(p["T_mult"]),
                "eta_min": lr * p["eta_min_factor"],
            },
            {"T_0": EPOCHS},
            (
                Param("T_0", "epochs", 0.1, 0.5),
                Param("T_mult", "int", 1, 2, limits=Bounds(1, 4)),
                _FRACTION,
            ),
            _torch_code("CosineAnnealingWarmRestarts"),
        ),
        Family(
            "PolynomialLR", EPOCH, lrs.PolynomialLR,
            lambda p, lr, E, S: {"total_iters": E, "power": p["power"]},
            {"total_iters": EPOCHS},
            (Param("power", "float", 0.5, 3.0, limits=Bounds(0, 10, low_open=True)),),
            _torch_code("PolynomialLR"),
        ),
        Family(
            "InverseTimeDecay", ITERATION, inverse_time_decay,
            lambda p, lr, E, S: {"decay": p["decay"]},
            {"decay": PER_ITER},
            (Param("decay", "float", 1e-5, 1e-1, log=True, limits=Bounds(0, 10)),),
            _code_inverse_time,
            doc="lr / (1 + decay * iteration)",
        ),
        Family(
            "WarmupCosine", ITERATION, warmup_cosine, _wc_kwargs,
            {"warmup_iters": ITERS, "total_iters": ITERS},
            (Param("warmup_frac", "float", 0.01, 0.3, limits=OPEN_UNIT), _FRACTION),
            _code_warmup_cosine,
            own_warmup=True,
            doc="linear warmup, then cosine to eta_min",
        ),
        Family(
            "WarmupStableDecay", ITERATION, warmup_stable_decay, _wsd_kwargs,
            {"warmup_iters": ITERS, "stable_iters": ITERS, "decay_iters": ITERS},
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


# 4. Resolving, rescaling and building.


def _to_iterations(kwargs: Mapping[str, Any], units: Mapping[str, str], S: int) -> dict:
    """Express epoch-counted kwargs in optimizer steps (for stepping per iteration)."""
    out = dict(kwargs)
    for k, unit in units.items():
        if unit == EPOCHS:
            out[k] = [v * S for v in out[k]] if isinstance(out[k], list) else out[k] * S
        elif unit == PER_EPOCH:
            out[k] = out[k] ** (1.0 / S)
    return out


def units_of(family_name: str, warmed_up: bool) -> dict[str, str]:
    """Units of a family's kwargs; iteration units where an added warmup made them so."""
    units = dict(family(family_name).units)
    if not warmed_up:
        return units
    convert = {EPOCHS: ITERS, PER_EPOCH: PER_ITER_FACTOR}
    return {k: convert.get(u, u) for k, u in units.items()}


def resolve(schedule: ScheduleConfig, epochs: int, steps_per_epoch: int) -> Built:
    """The exact kwargs for this budget, without building anything (`scheduler` is None)."""
    fam = family(schedule.family)
    kwargs = fam.kwargs(schedule.params, schedule.lr, epochs, steps_per_epoch)
    warmup_iters = round(schedule.warmup_epochs * steps_per_epoch)
    if warmup_iters > 0 and fam.warmup_ok:
        # The main schedule then runs per iteration after the warmup (SequentialLR).
        kwargs = _to_iterations(kwargs, fam.units, steps_per_epoch)
        warmup = {"start_factor": WARMUP_START_FACTOR, "total_iters": warmup_iters}
        return Built(fam.name, None, ITERATION, kwargs, warmup, epochs, steps_per_epoch)
    return Built(fam.name, None, fam.interval, kwargs, None, epochs, steps_per_epoch)


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


def rescale(
    kwargs: Mapping[str, Any], units: Mapping[str, str], old: tuple[int, int], new: tuple[int, int]
) -> dict[str, Any]:
    """Move kwargs from (epochs, steps_per_epoch) `old` to `new`, keeping the shape over the run.

    Counts scale with the run's length; rates change so the same LR is reached at the same
    fraction of training.
    """
    (e0, s0), (e1, s1) = old, new
    out = dict(kwargs)
    for k, unit in units.items():
        if k not in out:
            continue
        v = out[k]
        if unit == EPOCHS:
            scale = e1 / e0
            low = 0 if k == "patience" else 1
            out[k] = (
                sorted({max(1, round(m * scale)) for m in v})
                if isinstance(v, list)
                else max(low, round(v * scale))
            )
        elif unit == ITERS:
            out[k] = max(1, round(v * (e1 * s1) / (e0 * s0)))
        elif unit == PER_EPOCH:
            out[k] = v ** (e0 / e1)
        elif unit == PER_ITER_FACTOR:
            out[k] = v ** ((e0 * s0) / (e1 * s1))
        elif unit == PER_ITER:
            out[k] = v * (e0 * s0) / (e1 * s1)
    return out

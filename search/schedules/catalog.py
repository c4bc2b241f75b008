"""The schedule catalog: family name -> how torch builds it, how it steps, what is searched.

Every family is built from `torch.optim.lr_scheduler` classes; composites are made of
LambdaLR / LinearLR / ConstantLR / CosineAnnealingLR / SequentialLR. Nothing here
re-implements a scheduler's math. A family's `kwargs(params, lr, horizon)` turns its
budget-free parameters into the exact torch kwargs for a horizon (search.schedules.rescale
chooses the horizon); its `construction(kwargs)` is the construction for them, as data
(search.schedules.construction), which torch builds and `best` prints.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from search.schedules.construction import Call, Chain, Construction, lit

__all__ = ["EPOCH", "ITERATION", "MAX_MILESTONES", "ONE_CYCLE_STANDARD", "PLATEAU", "SCHEDULES",
           "WARMUP_START_FACTOR", "Bounds", "Family", "Param", "family", "milestones"]

# How a scheduler is stepped.
EPOCH = "epoch"  # scheduler.step() once after every epoch
ITERATION = "iteration"  # scheduler.step() after every optimizer.step()
PLATEAU = "plateau"  # scheduler.step(val_loss) after every epoch

WARMUP_START_FACTOR = 0.01  # LR at the first warmup step, as a fraction of the base LR
# OneCycleLR at torch's own defaults: the "standard" one-cycle of the enqueued defaults and the
# contest's reference shapes.
ONE_CYCLE_STANDARD = {"pct_start": 0.3, "div_factor": 25.0, "final_div_factor": 1e4}


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
class Family:
    name: str
    interval: str
    construction: Callable[[Mapping[str, Any]], Construction]  # exact kwargs -> its torch
    # construction
    # (params, lr, horizon) -> exact torch kwargs; `horizon` counts the scheduler steps the
    # schedule spans: epochs for epoch-stepped families, optimizer steps for per-iteration
    # ones and for any family after an added warmup (then it is the steps after the warmup).
    kwargs: Callable[[Mapping[str, Any], float, int], dict[str, Any]]
    params: tuple[Param, ...]
    own_warmup: bool = False  # has a warmup phase of its own (no extra warmup is added)
    doc: str = ""

    @property
    def warmup_ok(self) -> bool:
        return not self.own_warmup and self.interval != PLATEAU


# 1. Constructions: each family's torch classes for its exact kwargs (search.schedules.
# construction builds that value and prints it, so the code printed is what was built).


def _torch(cls: str) -> Callable[[Mapping[str, Any]], Construction]:
    """One torch scheduler class called with the family's kwargs."""
    return lambda kw: Call(cls, dict(kw))


def _constant(kw: Mapping[str, Any]) -> Construction:
    return Call("LambdaLR", {}, "lambda step: 1.0")


def _inverse_time_decay(kw: Mapping[str, Any]) -> Construction:
    # lr = base_lr / (1 + decay * iteration), stepped per iteration
    return Call("LambdaLR", {}, f"lambda it: 1.0 / (1.0 + {lit(kw['decay'])} * it)")


def _warmup_cosine(kw: Mapping[str, Any]) -> Construction:
    w, t = kw["warmup_iters"], kw["total_iters"]
    return Chain((Call("LinearLR", {"start_factor": WARMUP_START_FACTOR, "total_iters": w}),
                  Call("CosineAnnealingLR", {"T_max": t - w, "eta_min": kw["eta_min"]})), (w,))


def _warmup_stable_decay(kw: Mapping[str, Any]) -> Construction:
    w, s, d = kw["warmup_iters"], kw["stable_iters"], kw["decay_iters"]
    return Chain((Call("LinearLR", {"start_factor": WARMUP_START_FACTOR, "total_iters": w}),
                  Call("ConstantLR", {"factor": 1.0, "total_iters": s}),
                  Call("LinearLR", {"start_factor": 1.0, "end_factor": kw["end_factor"],
                                    "total_iters": d})), (w, w + s))


# 2. The catalog. kwargs(params, lr, horizon) -> exact torch kwargs.


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
            "Constant", EPOCH, _constant, lambda p, lr, h: {}, (),
            doc="the base LR throughout",
        ),
        Family(
            "StepLR", EPOCH, _torch("StepLR"),
            lambda p, lr, h: {"step_size": _count(p["step_size"], h), "gamma": p["gamma"]},
            (Param("step_size", "epochs", 0.1, 0.5), _GAMMA),
        ),
        Family(
            "MultiStepLR", EPOCH, _torch("MultiStepLR"),
            lambda p, lr, h: {"milestones": milestones(p, h), "gamma": p["gamma"]},
            (Param("n_milestones", "cuts", 1, 3, limits=Bounds(1, MAX_MILESTONES)), *_GAPS,
             _GAMMA),
            doc="n milestones at ordered gaps of the run",
        ),
        Family(
            "ExponentialLR", EPOCH, _torch("ExponentialLR"),
            # searched as the LR factor reached at the end of the run, so ranges fit any budget
            lambda p, lr, h: {"gamma": p["final_factor"] ** (1.0 / h)},
            (Param("final_factor", "float", 1e-3, 0.5, log=True),),
        ),
        Family(
            "CosineAnnealingLR", EPOCH, _torch("CosineAnnealingLR"),
            lambda p, lr, h: {"T_max": _count(p["T_max"], h), "eta_min": lr * p["eta_min_factor"]},
            (Param("T_max", "epochs", 0.5, 1.0), _FRACTION),
        ),
        Family(
            "ReduceLROnPlateau", PLATEAU, _torch("ReduceLROnPlateau"),
            lambda p, lr, h: {
                "mode": "min", "factor": p["factor"], "patience": _count(p["patience"], h, 0),
            },
            (
                Param("factor", "float", 0.1, 0.7, limits=OPEN_UNIT),
                Param("patience", "epochs", 0.0, 0.2, limits=Bounds(0, 1)),
            ),
        ),
        Family(
            "OneCycleLR", ITERATION, _torch("OneCycleLR"),
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
            own_warmup=True,
        ),
        Family(
            "CosineAnnealingWarmRestarts", EPOCH,
            _torch("CosineAnnealingWarmRestarts"),
            lambda p, lr, h: {
                "T_0": _count(p["T_0"], h), "T_mult": int(p["T_mult"]),
                "eta_min": lr * p["eta_min_factor"],
            },
            (
                Param("T_0", "epochs", 0.1, 0.5),
                Param("T_mult", "int", 1, 2, limits=Bounds(1, 4)),
                _FRACTION,
            ),
        ),
        Family(
            "PolynomialLR", EPOCH, _torch("PolynomialLR"),
            lambda p, lr, h: {"total_iters": h, "power": p["power"]},
            (Param("power", "float", 0.5, 3.0, limits=Bounds(0, 10, low_open=True)),),
        ),
        Family(
            "InverseTimeDecay", ITERATION, _inverse_time_decay,
            # searched as the LR factor reached at the end of the run: 1 / (1 + decay * h)
            lambda p, lr, h: {"decay": (1.0 / p["final_factor"] - 1.0) / h},
            (Param("final_factor", "float", 0.01, 0.99, log=True),),
            doc="lr / (1 + decay * iteration)",
        ),
        Family(
            "WarmupCosine", ITERATION, _warmup_cosine, _wc_kwargs,
            (Param("warmup_frac", "float", 0.01, 0.3, limits=OPEN_UNIT), _FRACTION),
            own_warmup=True,
            doc="linear warmup, then cosine to eta_min",
        ),
        Family(
            "WarmupStableDecay", ITERATION, _warmup_stable_decay, _wsd_kwargs,
            (
                Param("warmup_frac", "float", 0.01, 0.2, limits=OPEN_UNIT),
                Param("decay_frac", "float", 0.1, 0.6, limits=OPEN_UNIT),
                Param("end_factor", "float", 1e-3, 0.1, log=True, limits=Bounds(0, 1)),
            ),
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

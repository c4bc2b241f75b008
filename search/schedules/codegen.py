"""Code generation: a family's exact torch kwargs -> the Python expression that builds it.

The printed code is the construction the trial trained with: torch classes are called with
their kwargs, and the composites of search.schedules.catalog are written out class by class.
Floats are printed in their shortest exact form, so pasted code applies exactly the LRs the
trial applied.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from search.schedules.catalog import WARMUP_START_FACTOR, family

__all__ = ["code", "lit"]

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


# The composites' code, by family; every other family is one torch class called with its kwargs.
_COMPOSITES: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "Constant": _code_constant,
    "InverseTimeDecay": _code_inverse_time,
    "WarmupCosine": _code_warmup_cosine,
    "WarmupStableDecay": _code_wsd,
}


def code(name: str, kwargs: Mapping[str, Any]) -> str:
    """The Python expression building family `name` with `kwargs` on `optimizer`."""
    if name in _COMPOSITES:
        return _COMPOSITES[name](kwargs)
    return _call(family(name).make.__name__, kwargs)

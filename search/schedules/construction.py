"""A scheduler's construction, as data: what torch builds and what `best` prints, from one value.

A `Call` is one class of `torch.optim.lr_scheduler` called on `optimizer` with its kwargs (a
LambdaLR carries its lambda as source text); a `Chain` is SequentialLR over calls with its
milestones. Every family's construction for a budget is one of these (the catalog's
`Family.construction`; an added warmup chains a LinearLR before it, `with_warmup`).
`construct` builds it with torch, `source` writes it as Python: both read the same value, so
the printed code cannot differ from what the trial trained with. A lambda is built by
evaluating its own printed source (no names reachable but its arguments), so even that is
written once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch.optim import Optimizer
from torch.optim import lr_scheduler as lrs

__all__ = ["Call", "Chain", "Construction", "construct", "lit", "source", "with_warmup"]

PREFIX = "torch.optim.lr_scheduler"


def lit(v: Any) -> str:
    """A Python literal for a kwarg value; floats in their shortest exact form (repr), so the
    pasted code applies exactly the LRs the trial applied."""
    if isinstance(v, list | tuple):
        return "[" + ", ".join(lit(x) for x in v) + "]"
    return repr(v)


@dataclass(frozen=True)
class Call:
    cls: str  # a class of torch.optim.lr_scheduler
    kwargs: Mapping[str, Any] = field(default_factory=dict)  # after `optimizer`
    lam: str = ""  # LambdaLR: the lambda's source, its numbers written with `lit`


@dataclass(frozen=True)
class Chain:
    parts: tuple[Call, ...]
    milestones: tuple[int, ...]


Construction = Call | Chain


def with_warmup(main: Construction, warmup: Mapping[str, Any] | None) -> Construction:
    """`main` after an added linear warmup (LinearLR kwargs), or `main` where there is none.
    Families with a warmup of their own (the chains) never get one added."""
    if warmup is None:
        return main
    if isinstance(main, Chain):
        raise ValueError("a chained schedule has its own warmup; none is added to it")
    return Chain((Call("LinearLR", dict(warmup)), main), (int(warmup["total_iters"]),))


def _one(optimizer: Optimizer, c: Call) -> lrs.LRScheduler:
    cls = getattr(lrs, c.cls)
    if c.lam:
        return cls(optimizer, eval(c.lam, {"__builtins__": {}}), **c.kwargs)  # noqa: S307
    return cls(optimizer, **c.kwargs)


def construct(optimizer: Optimizer, construction: Construction) -> Any:
    """The torch scheduler `construction` describes, on `optimizer`."""
    if isinstance(construction, Call):
        return _one(optimizer, construction)
    return lrs.SequentialLR(optimizer, [_one(optimizer, c) for c in construction.parts],
                            milestones=list(construction.milestones))


def _call_code(c: Call) -> str:
    args = [c.lam] if c.lam else []
    args += [f"{k}={lit(v)}" for k, v in c.kwargs.items()]
    return f"{PREFIX}.{c.cls}(optimizer{', ' if args else ''}{', '.join(args)})"


def source(construction: Construction) -> str:
    """The Python expression building `construction` on `optimizer`."""
    if isinstance(construction, Call):
        return _call_code(construction)
    parts = "".join(f"    {_call_code(c)},\n" for c in construction.parts)
    cuts = lit(list(construction.milestones))
    return f"{PREFIX}.SequentialLR(optimizer, [\n{parts}], milestones={cuts})"

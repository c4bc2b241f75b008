"""The contest's reference shapes (the tuned baselines every search must beat), what makes
two runs the same contender, and the LR grid each reference is tuned on.

A reference shape is a schedule whose only free knob is its LR: constant, cosine over the
whole run, one-cycle at torch's standard settings, linear decay to zero, and the schedule-free
variant of the study's optimizer (no schedule at all, its own larger LR). The contest tunes
each one's LR on the validation split before any shape is searched, and races them with the
searched shapes; `validate` confirms them on the test split with the LR the contest found.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import math
from collections.abc import Callable, Mapping

from objectives.optimizers import OPTIMIZERS
from search import schedules, space
from search.config import ContestConfig, StudyConfig

# The reference shapes are defined in search.schedules.references (a plain search's enqueued
# defaults read them too); the contest adds the schedule-free one (`references`).
from search.schedules import REFERENCES, Reference
from search.schedules.references import SCHEDULE_FREE

__all__ = ["REFERENCES", "Reference", "at_edge", "contender_key", "edge_margin", "grid_lrs",
           "knobs", "lr_clip", "next_lrs", "references", "unavailable"]

# The grids' ratio and steps: search.config.ContestConfig (the study's contest settings).
GRID_RATIO, GRID_EXTEND = ContestConfig.GRID_RATIO, ContestConfig.GRID_EXTEND


def unavailable(cfg: StudyConfig, ref: Reference) -> str:
    """Why a reference cannot run in this study ("" where it can). A user objective trains a
    schedule-free optimizer where its module says so: `TRAINS_OPTIMIZERS = True` (it builds
    the optimizer `cfg.optimizer` names, as objectives.classify.make_optimizer does)."""
    if not ref.optimizer:
        return ""
    from search.config import DEFAULT_OBJECTIVE

    module = cfg.objective.partition(":")[0]
    if cfg.objective != DEFAULT_OBJECTIVE and not getattr(
            importlib.import_module(module), "TRAINS_OPTIMIZERS", False):
        return f"{ref.label} baseline not run: the objective has no schedule-free optimizer"
    if importlib.util.find_spec("schedulefree") is None:
        return (f"{ref.label} baseline not run: the `schedulefree` package is not installed "
                "(pip install schedulefree)")
    return ""


def references(cfg: StudyConfig, notes: list[str] | None = None) -> tuple[Reference, ...]:
    """The references this study can run: those its `[contest] references` lists (by default
    every REFERENCES entry marked by_default and the schedule-free one), in REFERENCES' order,
    the schedule-free variant of its optimizer last where the objective and the installed
    packages allow (else a note says why)."""
    free = OPTIMIZERS[OPTIMIZERS[cfg.train.optimizer].schedule_free_variant]
    wanted = cfg.contest.references if cfg.contest is not None else ()  # a plain search: the
    # default references (what `validate` tunes for it)
    out = []
    for ref in (*REFERENCES, Reference(SCHEDULE_FREE, free.label, "Constant", {}, free.key,
                                       free.lr_factor)):
        if (ref.slot not in wanted) if wanted else not ref.by_default:
            continue
        why = unavailable(cfg, ref)
        if why and notes is not None:
            notes.append(why)
        if not why:
            out.append(ref)
    return tuple(out)


def knobs(cfg: StudyConfig) -> dict[str, float]:
    """The references' fixed knobs: the study's momentum and weight decay (the standard value
    inside a searched range) and AdamW's standard betas."""
    sp, base = cfg.space, schedules.ScheduleConfig("Constant")
    return {"momentum": sp.momentum.clip(base.momentum),
            "weight_decay": sp.weight_decay.clip(base.weight_decay), **space.standard_betas(sp)}


def lr_clip(cfg: StudyConfig, ref: Reference) -> Callable[[float], float]:
    """Where a reference's LRs may go: the study's LR range for its own optimizer; anywhere for
    a schedule-free one (its LR is its own scale, 3-10x a scheduled one)."""
    return cfg.space.lr.clip if not ref.optimizer else (lambda lr: lr)


def contender_key(s: schedules.ScheduleConfig, optimizer: str = "") -> str:
    """What makes two runs the same contender: the budget-free schedule and the optimizer."""
    what = {**s.to_dict(), "optimizer": optimizer or "sgd"}
    return hashlib.sha1(json.dumps(what, sort_keys=True).encode()).hexdigest()[:12]


def grid_lrs(centre: float, steps: tuple[int, ...], clip: Callable[[float], float],
             ratio: float = GRID_RATIO) -> list[float]:
    """LRs centre x ratio ** k for k in `steps`, each put through `clip` (the study's LR
    range for a scheduled optimizer), distinct and sorted."""
    return sorted({clip(centre * ratio**k) for k in steps})


def next_lrs(scored: Mapping[float, float], centre: float, clip: Callable[[float], float],
             first: tuple[int, ...], tried: tuple[int, ...], ratio: float = GRID_RATIO,
             margin: float = 0.0) -> tuple[int, ...]:
    """The grid step to add where the best LR sits on an edge that `clip` leaves room past,
    at most GRID_EXTEND steps beyond the `first` grid, and (with `margin`) only where that
    edge beats its neighbour by more than `margin`; () where the grid is done."""
    best = max(scored, key=lambda lr: (scored[lr], -lr))
    order = sorted(scored)
    low, high = min(tried), max(tried)

    def clear(edge: float, inner: float) -> bool:
        return margin <= 0 or scored[edge] - scored[inner] > margin

    if best == order[0] and low > min(first) - GRID_EXTEND and (
            len(order) < 2 or clear(order[0], order[1])):
        if clip(centre * ratio ** (low - 1)) < min(scored) * (1 - 1e-9):
            return (low - 1,)
    if best == order[-1] and high < max(first) + GRID_EXTEND and (
            len(order) < 2 or clear(order[-1], order[-2])):
        if clip(centre * ratio ** (high + 1)) > max(scored) * (1 + 1e-9):
            return (high + 1,)
    return ()


def edge_margin(noise_sd: float, horizon_index: int) -> float:
    """How much better than its neighbour a grid's best edge must be for the grid to go past
    it (next_lrs): any amount at the first horizon; at a longer one (its grid centred on the
    best LR one horizon shorter) more than the noise of a paired difference of two runs."""
    from search.contest.race import margin

    return 0.0 if horizon_index == 0 else margin(noise_sd, 1)


def at_edge(scored: Mapping[float, float], margin: float = 0.0) -> str:
    """"low" or "high" where the best LR of a finished grid is its lowest or highest, by more
    than `margin` over its neighbour (so the grid would have gone past it: what stopped it is
    the study's LR range or the extension limit), else ""."""
    finite = {lr: v for lr, v in scored.items() if not math.isinf(v)}
    if len(finite) < 2:
        return ""
    order = sorted(finite)
    best = max(finite, key=lambda lr: (finite[lr], -lr))
    if best == order[0] and best == min(scored) and finite[best] - finite[order[1]] > margin:
        return "low"
    if best == order[-1] and best == max(scored) and finite[best] - finite[order[-2]] > margin:
        return "high"
    return ""

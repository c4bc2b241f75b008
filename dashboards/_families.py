"""Per schedule family: the best validation accuracy and its spread (which wins, how reliably).

A box per family over its finished trials, the best marked, families ordered best first. The
axis label also counts how the others ended: pruned, diverged (non-finite loss, which the
runner records as a pruned trial with that end reason) and failed. A family that wins once
but diverges nine times in ten is less reliable than its best suggests.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from typing import NamedTuple

import optuna
import plotly.graph_objects as go
from optuna.trial import TrialState

from dashboards._common import (
    BEST_COLOR,
    TEMPLATE,
    Snapshot,
    empty_figure,
    family_of,
    floats,
    ints,
    no_finished_reason,
    snapshot,
    value,
)

__all__ = ["FamilyStats", "FamiliesInfo"]

TITLE = "Schedule families: best and spread of validation accuracy"


class FamilyStats(NamedTuple):
    family: str
    values: list[float]  # accuracies of finished trials, best first
    numbers: list[int]  # their trial numbers, same order
    best: float
    median: float
    n_pruned: int  # stopped by the pruner
    n_diverged: int  # end_reason "non_finite_loss"
    n_failed: int  # state FAIL (out of memory, errors)


class FamiliesInfo(NamedTuple):
    families: list[FamilyStats]  # best family first
    maximize: bool
    reason: str


def _info(study: optuna.Study | Snapshot) -> FamiliesInfo:
    snap = snapshot(study)
    if snap.reason:
        return FamiliesInfo([], snap.maximize, snap.reason)
    done = snap.best_first(snap.complete)
    if not done:
        return FamiliesInfo([], snap.maximize, no_finished_reason(snap))
    by_family: dict[str, list[optuna.trial.FrozenTrial]] = {}
    for t in done:  # already best first, so each family's list is too
        by_family.setdefault(family_of(t), []).append(t)
    ends: dict[str, Counter[str]] = {}
    for t in snap.trials:
        if t.state == TrialState.FAIL:
            ends.setdefault(family_of(t), Counter())["failed"] += 1
        elif t.state == TrialState.PRUNED:
            diverged = t.user_attrs.get("end_reason") == "non_finite_loss"
            ends.setdefault(family_of(t), Counter())["diverged" if diverged else "pruned"] += 1

    def stats(fam: str, values: list[float], numbers: list[int]) -> FamilyStats:
        n = ends.get(fam, Counter())
        best, median = (values[0], statistics.median(values)) if values else (math.nan,) * 2
        return FamilyStats(fam, values, numbers, best, median, n["pruned"], n["diverged"],
                           n["failed"])

    rows = [stats(f, [value(t) for t in ts], [t.number for t in ts])
            for f, ts in by_family.items()]
    # Families that never finished still get a (valueless) row saying how they ended.
    rows += [stats(f, [], []) for f in sorted(set(ends) - set(by_family))]
    return FamiliesInfo(rows, snap.maximize, "")


def _label(s: FamilyStats) -> str:
    extra = [f"{n} {what}" for n, what in
             ((s.n_pruned, "pruned"), (s.n_diverged, "diverged"), (s.n_failed, "failed")) if n]
    tail = f", {', '.join(extra)}" if extra else ""
    return f"{s.family} ({len(s.values)} done{tail})"


def _plot(info: FamiliesInfo) -> go.Figure:
    if info.reason:
        return empty_figure(TITLE, info.reason)
    fig = go.Figure()
    labels = [_label(s) for s in info.families]
    for s, label in zip(info.families, labels, strict=True):
        fig.add_trace(
            go.Box(
                x=floats(s.values or [None]), name=label, orientation="h", boxpoints="all",
                jitter=0.4, pointpos=0, marker={"size": 4, "opacity": 0.6},
                customdata=ints(s.numbers), showlegend=False,
                hovertemplate="trial %{customdata}<br>val acc %{x:.4f}<extra>" + s.family
                + "</extra>",
            )
        )
    ranked = [(s, lab) for s, lab in zip(info.families, labels, strict=True) if s.values]
    fig.add_trace(
        go.Scatter(
            x=[s.best for s, _ in ranked], y=[lab for _, lab in ranked], mode="markers",
            marker={"symbol": "star", "size": 13, "color": BEST_COLOR}, name="best",
            hovertemplate="best %{x:.4f}<extra>%{y}</extra>",
        )
    )
    win = info.families[0]
    spread = f"median {win.median:.4f} over {len(win.values)} finished"
    fig.update_layout(
        title={"text": f"{TITLE}<br><sup>{win.family} wins: best {win.best:.4f}, {spread}</sup>"},
        height=160 + 38 * len(info.families), template=TEMPLATE,
        xaxis={"title": {"text": "validation accuracy"}},
        # Best family on top: categories are drawn bottom-up, so reverse.
        yaxis={"categoryorder": "array", "categoryarray": labels[::-1], "automargin": True},
        legend={"orientation": "h", "y": -0.15},
    )
    return fig

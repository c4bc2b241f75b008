"""Per schedule family: the best validation accuracy and its spread (which wins, how reliably).

A box per family over its finished trials, the best marked, families ordered best first. The
hover and the axis label also count pruned and failed trials: a family that wins once but is
pruned nine times in ten is less reliable than its best suggests.
"""

from __future__ import annotations

import statistics
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
    n_pruned: int
    n_failed: int  # failed + other ends (non-finite loss, OOM, interrupted)


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
    pruned: dict[str, int] = {}
    failed: dict[str, int] = {}
    for t in snap.trials:
        if t.state == TrialState.PRUNED:
            pruned[family_of(t)] = pruned.get(family_of(t), 0) + 1
        elif t.state == TrialState.FAIL:
            failed[family_of(t)] = failed.get(family_of(t), 0) + 1
    stats = []
    for fam, ts in by_family.items():
        values = [value(t) for t in ts]
        stats.append(FamilyStats(fam, values, [t.number for t in ts], values[0],
                                 statistics.median(values), pruned.get(fam, 0),
                                 failed.get(fam, 0)))
    # Families that only ever got pruned or failed still get a (valueless) row: say so.
    for fam in sorted((set(pruned) | set(failed)) - set(by_family)):
        stats.append(FamilyStats(fam, [], [], float("nan"), float("nan"),
                                 pruned.get(fam, 0), failed.get(fam, 0)))
    return FamiliesInfo(stats, snap.maximize, "")


def _label(s: FamilyStats) -> str:
    extra = [f"{s.n_pruned} pruned"] if s.n_pruned else []
    extra += [f"{s.n_failed} failed"] if s.n_failed else []
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

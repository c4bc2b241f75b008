"""Optimization history: each complete trial's value (the study's metric, search.goal) by
trial number and the best so far.

Pruned trials appear faded at the last value they reported, so a study that prunes most of
its trials does not look empty.
"""

from __future__ import annotations

from typing import NamedTuple

import optuna
import plotly.graph_objects as go
from optuna.trial import TrialState

from dashboards._common import (
    BEST_COLOR,
    COMPLETE_COLOR,
    PRUNED_COLOR,
    TEMPLATE,
    Snapshot,
    axis_title,
    empty_figure,
    floats,
    ints,
    last_value,
    no_complete_reason,
    short_name,
    snapshot,
    value,
)
from search import record
from search.goal import DEFAULT, Goal

__all__ = ["HistoryInfo"]

TITLE = "Optimization history"


class HistoryInfo(NamedTuple):
    numbers: list[int]  # complete trials, in trial order
    values: list[float]
    families: list[str]
    best_so_far: list[float]  # running best after each complete trial
    pruned_numbers: list[int]
    pruned_values: list[float]  # last reported value of each pruned trial
    reason: str
    goal: Goal = DEFAULT


def _info(study: optuna.Study | Snapshot) -> HistoryInfo:
    snap = snapshot(study)
    if snap.reason:
        return HistoryInfo([], [], [], [], [], [], snap.reason, snap.goal)
    goal = snap.goal
    done = sorted(snap.complete, key=lambda t: t.number)
    best: list[float] = []
    for t in done:
        best.append(max(best[-1:] + [value(t)], key=goal.score))
    pruned = [
        (t.number, v)
        for t in sorted(snap.of_state(TrialState.PRUNED), key=lambda t: t.number)
        if (v := last_value(t, goal)) is not None
    ]
    reason = "" if done or pruned else no_complete_reason(snap)
    return HistoryInfo(
        [t.number for t in done], [value(t) for t in done],
        [record.family_of(t) for t in done], best,
        [n for n, _ in pruned], [v for _, v in pruned], reason, goal,
    )


def _plot(info: HistoryInfo) -> go.Figure:
    if info.reason:
        return empty_figure(TITLE, info.reason)
    fig = go.Figure()
    name = short_name(info.goal)
    if info.pruned_numbers:
        fig.add_trace(
            go.Scatter(
                x=ints(info.pruned_numbers), y=floats(info.pruned_values), mode="markers",
                name="pruned (last)",
                marker={"color": PRUNED_COLOR, "size": 5, "symbol": "x"},
                hovertemplate=f"trial %{{x}} pruned<br>last {name} %{{y:.4f}}<extra></extra>",
            )
        )
    if info.numbers:
        fig.add_trace(
            go.Scatter(
                x=ints(info.numbers), y=floats(info.values), mode="markers", name="complete",
                customdata=info.families, marker={"color": COMPLETE_COLOR, "size": 6},
                hovertemplate=f"trial %{{x}} (%{{customdata}})<br>{name} %{{y:.4f}}"
                "<extra></extra>",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=ints(info.numbers), y=floats(info.best_so_far), mode="lines", name="best so far",
                line={"color": BEST_COLOR, "width": 2, "shape": "hv"},
                hovertemplate="best after trial %{x}: %{y:.4f}<extra></extra>",
            )
        )
    fig.update_layout(
        title={"text": TITLE}, template=TEMPLATE, height=420,
        xaxis={"title": {"text": "trial"}}, yaxis={"title": {"text": axis_title(info.goal)}},
    )
    return fig

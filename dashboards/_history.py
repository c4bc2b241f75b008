"""Optimization history: each complete trial's accuracy by trial number and the best so far.

Pruned trials appear faded at the last accuracy they reported, so a study that prunes most of
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
    empty_figure,
    family_of,
    floats,
    ints,
    no_complete_reason,
    score,
    snapshot,
    value,
)

__all__ = ["HistoryInfo"]

TITLE = "Optimization history"


class HistoryInfo(NamedTuple):
    numbers: list[int]  # complete trials, in trial order
    values: list[float]
    families: list[str]
    best_so_far: list[float]  # running best after each complete trial
    pruned_numbers: list[int]
    pruned_values: list[float]  # last reported accuracy of each pruned trial
    reason: str


def _info(study: optuna.Study | Snapshot) -> HistoryInfo:
    snap = snapshot(study)
    if snap.reason:
        return HistoryInfo([], [], [], [], [], [], snap.reason)
    done = sorted(snap.complete, key=lambda t: t.number)
    pick = max if snap.maximize else min
    best: list[float] = []
    for t in done:
        best.append(value(t) if not best else pick(best[-1], value(t)))
    pruned = [
        (t.number, s)
        for t in sorted(snap.of_state(TrialState.PRUNED), key=lambda t: t.number)
        if (s := score(t)) is not None
    ]
    reason = "" if done or pruned else no_complete_reason(snap)
    return HistoryInfo(
        [t.number for t in done], [value(t) for t in done],
        [family_of(t) for t in done], best,
        [n for n, _ in pruned], [s for _, s in pruned], reason,
    )


def _plot(info: HistoryInfo) -> go.Figure:
    if info.reason:
        return empty_figure(TITLE, info.reason)
    fig = go.Figure()
    if info.pruned_numbers:
        fig.add_trace(
            go.Scatter(
                x=ints(info.pruned_numbers), y=floats(info.pruned_values), mode="markers",
                name="pruned (last)",
                marker={"color": PRUNED_COLOR, "size": 5, "symbol": "x"},
                hovertemplate="trial %{x} pruned<br>last val acc %{y:.4f}<extra></extra>",
            )
        )
    if info.numbers:
        fig.add_trace(
            go.Scatter(
                x=ints(info.numbers), y=floats(info.values), mode="markers", name="complete",
                customdata=info.families, marker={"color": COMPLETE_COLOR, "size": 6},
                hovertemplate="trial %{x} (%{customdata})<br>val acc %{y:.4f}<extra></extra>",
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
        xaxis={"title": {"text": "trial"}}, yaxis={"title": {"text": "validation accuracy"}},
    )
    return fig

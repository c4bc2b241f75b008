"""The LR actually applied in each epoch by the top trials, overlaid (log scale, coloured by
validation accuracy): what the winning schedules have in common is visible at a glance."""

from __future__ import annotations

from typing import NamedTuple

import optuna
import plotly.graph_objects as go
from plotly.colors import sample_colorscale

from dashboards._common import (
    TEMPLATE,
    Snapshot,
    curve,
    empty_figure,
    family_of,
    snapshot,
    value,
)

__all__ = ["LRCurve", "LRCurvesInfo"]

TITLE = "Applied learning rate of the top trials"
COLORSCALE = "Viridis"


class LRCurve(NamedTuple):
    number: int
    family: str
    accuracy: float
    epochs: list[int]  # 1-based epoch numbers
    lrs: list[float | None]  # LR applied in that epoch; None where it can't go on a log axis


class LRCurvesInfo(NamedTuple):
    curves: list[LRCurve]  # best first
    reason: str


def _info(study: optuna.Study | Snapshot, top: int = 10) -> LRCurvesInfo:
    snap = snapshot(study)
    if snap.reason:
        return LRCurvesInfo([], snap.reason)
    done = snap.best_first(snap.complete)
    if not done:
        return LRCurvesInfo([], "no finished trial yet: LR curves are drawn for finished trials")
    curves = []
    for t in done:
        lrs = [v if v is not None and v > 0 else None for v in curve(t, "lr_curve")]
        if not any(v is not None for v in lrs):
            continue
        epochs = list(range(1, len(lrs) + 1))
        curves.append(LRCurve(t.number, family_of(t), value(t), epochs, lrs))
        if len(curves) == top:
            break
    if not curves:
        return LRCurvesInfo([], "no finished trial recorded an `lr_curve`")
    return LRCurvesInfo(curves, "")


def _plot(info: LRCurvesInfo) -> go.Figure:
    if info.reason:
        return empty_figure(TITLE, info.reason)
    accs = [c.accuracy for c in info.curves]
    lo, hi = min(accs), max(accs)
    fig = go.Figure()
    # Worst first so that the best curve is drawn last, on top.
    for c in reversed(info.curves):
        pos = 0.5 if hi == lo else (c.accuracy - lo) / (hi - lo)
        color = sample_colorscale(COLORSCALE, [pos])[0]
        fig.add_trace(
            go.Scatter(
                x=c.epochs, y=c.lrs, mode="lines+markers", name=f"#{c.number} {c.family}",
                line={"color": color, "width": 2}, marker={"size": 4, "color": color},
                hovertemplate=f"trial {c.number} ({c.family}, val acc {c.accuracy:.4f})"
                "<br>epoch %{x}<br>lr %{y:.3g}<extra></extra>",
            )
        )
    # An invisible trace carries the colour bar (lines can't have one).
    fig.add_trace(
        go.Scatter(
            x=[None], y=[None], mode="markers", showlegend=False, hoverinfo="skip",
            marker={
                "colorscale": COLORSCALE, "cmin": lo, "cmax": hi if hi > lo else lo + 1e-9,
                "color": [lo], "showscale": True,
                "colorbar": {"title": {"text": "val acc"}, "x": 1.02, "len": 0.8},
            },
        )
    )
    fig.update_layout(
        title={"text": TITLE}, template=TEMPLATE, height=480,
        xaxis={"title": {"text": "epoch"}},
        yaxis={"title": {"text": "learning rate"}, "type": "log"},
        legend={"x": 1.15, "y": 1},
    )
    return fig

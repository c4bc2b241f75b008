"""The LR actually applied by the top trials, overlaid against the fraction of training (log
scale): what the winning schedules have in common is visible at a glance.

Resolution: the recorded per-step trace (`lr_trace`), so a warmup of a few hundred steps shows
as a ramp; stores written before it have one point per epoch, and the subtitle says so.
Colour: by rank, not by value, so one diverged trial cannot squeeze every other line into
one colour; the winner is a thick red line on top; the legend lists the trials best first.
"""

from __future__ import annotations

from typing import NamedTuple

import optuna
import plotly.graph_objects as go
from plotly.colors import sample_colorscale

from dashboards._common import (
    BEST_COLOR,
    TEMPLATE,
    Snapshot,
    empty_figure,
    floats,
    lr_points,
    short_name,
    snapshot,
    value,
)
from search import record
from search.goal import DEFAULT, Goal

__all__ = ["LRCurve", "LRCurvesInfo"]

TITLE = "Applied learning rate of the top trials"
COLORSCALE = "Viridis"
# Ranks 2.. take Viridis from dark (rank 2) to 0.85 (the last): the yellow end is too pale
# on white, and red is the winner's.
COLOR_SPAN = 0.85


class LRCurve(NamedTuple):
    rank: int  # 1 = the winner
    number: int
    family: str
    value: float  # the study's metric (search.goal)
    fractions: list[float]  # fraction of training where each LR was applied
    lrs: list[float | None]  # None where it can't go on a log axis
    per_step: bool


class LRCurvesInfo(NamedTuple):
    curves: list[LRCurve]  # best first
    resolution: str  # "per step", "per epoch" or "per step (per epoch for trials N, M)"
    reason: str
    goal: Goal = DEFAULT


def _info(study: optuna.Study | Snapshot, top: int = 10) -> LRCurvesInfo:
    snap = snapshot(study)
    if snap.reason:
        return LRCurvesInfo([], "", snap.reason, snap.goal)
    done = snap.best_first(snap.complete)
    if not done:
        return LRCurvesInfo([], "", "no complete trial yet: LR curves are drawn for complete "
                            "trials", snap.goal)
    curves: list[LRCurve] = []
    for t in done:
        pts = lr_points(t)
        if not any(v is not None for v in pts.lrs):
            continue
        curves.append(LRCurve(len(curves) + 1, t.number, record.family_of(t), value(t),
                              pts.fractions, pts.lrs, pts.per_step))
        if len(curves) == top:
            break
    if not curves:
        return LRCurvesInfo([], "", "no complete trial recorded an `lr_trace` or `lr_curve`",
                            snap.goal)
    coarse = [c.number for c in curves if not c.per_step]
    if not coarse:
        resolution = "per step"
    elif len(coarse) == len(curves):
        resolution = "per epoch (no `lr_trace` recorded)"
    else:
        resolution = f"per step (per epoch for trials {', '.join(map(str, coarse))})"
    return LRCurvesInfo(curves, resolution, "", snap.goal)


def rank_color(rank: int, n: int) -> str:
    """The winner red; the others along Viridis by rank (evenly spaced, whatever the values)."""
    if rank == 1:
        return BEST_COLOR
    pos = 0.0 if n <= 2 else COLOR_SPAN * (rank - 2) / (n - 2)
    return sample_colorscale(COLORSCALE, [pos])[0]


def _plot(info: LRCurvesInfo) -> go.Figure:
    if info.reason:
        return empty_figure(TITLE, info.reason)
    fig = go.Figure()
    n, metric = len(info.curves), short_name(info.goal)
    # Worst first so that the winner is drawn last, on top; legendrank keeps the legend in
    # rank order whatever the drawing order.
    for c in reversed(info.curves):
        color = rank_color(c.rank, n)
        win = c.rank == 1
        fig.add_trace(
            go.Scatter(
                x=floats(c.fractions), y=floats(c.lrs), name=f"{c.rank}. #{c.number} "
                f"{c.family} {c.value:.4f}", mode="lines" if c.per_step else "lines+markers",
                line={"color": color, "width": 4 if win else 1.6,
                      "shape": "linear" if c.per_step else "hv"},
                marker={"size": 4, "color": color}, legendrank=c.rank, opacity=1 if win else 0.8,
                hovertemplate=f"rank {c.rank}: trial {c.number} ({c.family}, {metric} "
                f"{c.value:.4f})<br>%{{x:.1%}} of training<br>lr %{{y:.3g}}<extra></extra>",
            )
        )
    note = f"winner red, the others by rank (dark = better); LR recorded {info.resolution}"
    fig.update_layout(
        title={"text": f"{TITLE}<br><sup>{note}</sup>"}, template=TEMPLATE, height=480,
        xaxis={"title": {"text": "fraction of training"}, "tickformat": ".0%", "range": [0, 1]},
        yaxis={"title": {"text": "learning rate"}, "type": "log"},
        legend={"title": {"text": f"rank. trial family {metric}"}, "font": {"size": 11}},
        margin={"r": 10},
    )
    return fig

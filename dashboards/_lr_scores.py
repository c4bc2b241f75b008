"""Score against LR for each family: how much the LR matters, and where each family's is good.

One point per finished run (its final value of the study's metric, search.goal, against its
LR on a log axis), one colour per group: each reference shape of a contest (its LR grid drawn
as a line, its band within noise of its best shaded) and each searched family. The
recommendation is the red star. Seed repeats of a contender (race runs) are drawn as small
marks at its LR. The value axis shows the region near the best (`value_range`): the best at
the top for a maximised metric, at the bottom for a minimised one (values are never negated,
the axis never reversed). Pure data step `_info` (tested directly), drawing step `_plot`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import NamedTuple

import optuna
import plotly.graph_objects as go

from dashboards._common import (
    BEST_COLOR,
    BOTTOM_LEGEND,
    TEMPLATE,
    Snapshot,
    axis_title,
    empty_figure,
    no_complete_reason,
    short_name,
    snapshot,
)
from search import record
from search.contest.standing import standing
from search.goal import DEFAULT, Goal

__all__ = ["Group", "LRScoreInfo"]

TITLE = "Score against learning rate, per family: does the LR or the shape matter?"
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#17becf", "#e377c2",
          "#7f7f7f", "#bcbd22", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173"]


class Group(NamedTuple):
    name: str  # a reference's label, or a family
    kind: str  # "reference" (a contest's LR grid) or "searched"
    lrs: list[float]
    values: list[float]  # the study's metric, in its own terms
    trials: list[int]
    band: tuple[float, float] | None  # LRs within noise of the group's best (references)
    repeats: list[tuple[float, float]]  # (lr, value) of race runs on other seeds


class LRScoreInfo(NamedTuple):
    groups: list[Group]
    recommended: tuple[float, float, str] | None  # (lr, mean value over seeds, label)
    reason: str
    goal: Goal = DEFAULT


def _lr(t: optuna.trial.FrozenTrial) -> float | None:
    r = record.of(t)
    lr = (r.schedule or r.fixed or {}).get("lr")
    return float(lr) if isinstance(lr, (int, float)) and lr > 0 else None


def _info(study: optuna.Study | Snapshot) -> LRScoreInfo:
    snap = snapshot(study)
    if snap.reason:
        return LRScoreInfo([], None, snap.reason, snap.goal)
    lr_of = {t.number: lr for t in snap.complete if (lr := _lr(t)) is not None}
    done = [t for t in snap.complete if t.number in lr_of]
    if not done:
        return LRScoreInfo([], None, no_complete_reason(snap), snap.goal)
    st = standing(snap.study)
    length = st.state.settings.lengths[-1] if st is not None else None
    by: dict[tuple[str, str], list] = {}
    repeats: dict[str, list[tuple[float, float]]] = {}
    for t in sorted(done, key=lambda t: lr_of[t.number]):
        r = record.of(t)
        if r.stage == "reference" and length and r.epochs not in (None, length):
            continue  # a shorter horizon's grid: the LR law figure (_lr_law) shows it
        if r.stage == "race":
            repeats.setdefault(r.label or "", []).append(
                (lr_of[t.number], float(record.value_of(t))))
            continue
        key = ((str(r.label), "reference") if r.stage == "reference"
               else (record.family_of(t), "searched"))
        by.setdefault(key, []).append(t)
    groups = []
    for (name, kind), ts in sorted(by.items(), key=lambda kv: (kv[0][1] != "reference",
                                                                kv[0][0])):
        band = None
        if st is not None and kind == "reference":
            g = next((g for g in st.state.grids.values() if g.label == name), None)
            b = st.lr_band(g) if g is not None else None
            band = (b[0], b[1]) if b is not None else None
        groups.append(Group(name, kind, [lr_of[t.number] for t in ts],
                            [float(record.value_of(t)) for t in ts],
                            [t.number for t in ts], band, repeats.get(name, [])))
    rec = None
    win = next((t for t in snap.trials if t.number == snap.recommended), None)
    win_lr = _lr(win) if win is not None else None
    if win is not None and win_lr is not None:
        lead = st.leader if st is not None else None
        # the contest's mean is a score (Goal.score); shown as the metric's value
        mean = snap.goal.value(lead.mean) if lead is not None else float(record.value_of(win))
        rec = (win_lr, mean, snap.label or f"trial {win.number} {record.family_of(win)}")
    return LRScoreInfo(groups, rec, "", snap.goal)


ACCURACY_WINDOW = 0.1  # accuracy: the 10 points below the best
WINDOW_PER_SPREAD = 2.0  # another metric: twice the best's distance to the median run


def value_range(goal: Goal, values: Sequence[float]) -> list[float] | None:
    """The value axis's range: the region near the best, where the LRs that matter differ
    (diverged or hopeless runs fall off the far end). Computed on scores, so it is the same
    window for a maximised and a minimised metric: the best sits a tenth of the window from
    the top edge for a maximised metric, from the bottom edge for a minimised one (the axis is
    never reversed). None: nothing to show (autorange)."""
    scores = [goal.score(v) for v in values if math.isfinite(v)]
    if not scores:
        return None
    top = max(scores)
    if goal.is_accuracy:
        window = ACCURACY_WINDOW
    else:  # unknown units: from the spread of the runs themselves
        window = (WINDOW_PER_SPREAD * (top - statistics.median(scores))
                  or 0.1 * abs(top) or ACCURACY_WINDOW)
    return sorted([goal.value(top - window), goal.value(top + window / 10)])


def _plot(info: LRScoreInfo) -> go.Figure:
    if info.reason:
        return empty_figure(TITLE, info.reason)
    fig = go.Figure()
    metric = short_name(info.goal)
    for i, g in enumerate(info.groups):
        color = COLORS[i % len(COLORS)]
        ref = g.kind == "reference"
        fig.add_trace(go.Scatter(
            x=g.lrs, y=g.values, mode="lines+markers" if ref else "markers",
            name=f"{g.name}{' (LR grid)' if ref else ''}", legendgroup=g.name,
            marker={"size": 9 if ref else 7, "color": color,
                    "symbol": "diamond" if ref else "circle"},
            line={"color": color, "width": 2}, customdata=g.trials,
            hovertemplate=f"{g.name}<br>trial %{{customdata}}<br>lr %{{x:.3g}}<br>{metric} "
                          "%{y:.4f}<extra></extra>"))
        if g.repeats:
            fig.add_trace(go.Scatter(
                x=[r[0] for r in g.repeats], y=[r[1] for r in g.repeats], mode="markers",
                showlegend=False, legendgroup=g.name,
                marker={"size": 5, "color": color, "symbol": "line-ew-open"},
                hovertemplate=f"{g.name}: another seed<br>{metric} %{{y:.4f}}<extra></extra>"))
        if g.band is not None and g.band[0] < g.band[1]:
            fig.add_vrect(x0=g.band[0], x1=g.band[1], fillcolor=color, opacity=0.07,
                          line_width=0)
    if info.recommended is not None:
        lr, mean, label = info.recommended
        fig.add_trace(go.Scatter(
            x=[lr], y=[mean], mode="markers", name=f"recommended: {label}",
            marker={"symbol": "star", "size": 16, "color": BEST_COLOR},
            hovertemplate=f"{label}<br>lr %{{x:.3g}}<br>mean {metric} %{{y:.4f}}"
                          "<extra></extra>"))
    fig.update_xaxes(title_text="learning rate (peak or base)", type="log")
    fig.update_yaxes(title_text=axis_title(info.goal),
                     range=value_range(info.goal, [v for g in info.groups for v in g.values]))
    fig.update_layout(
        title={"text": f"{TITLE}<br><sup>shaded: LRs within one run's noise of a reference's "
                       "best; small dashes: the same contender on other seeds</sup>"},
        template=TEMPLATE, height=560, legend=BOTTOM_LEGEND, margin={"l": 10, "r": 10,
                                                                     "t": 90})
    return fig

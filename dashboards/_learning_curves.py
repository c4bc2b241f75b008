"""The study's metric (search.goal: validation accuracy, val_loss, ...) against epoch for
every trial; pruned ones faded, so pruning is visible.

Each group (complete, pruned, failed, running) is drawn as ONE trace with gaps between
trials: a 2,000-trial study stays a handful of SVG paths instead of 2,000 traces.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import optuna
import plotly.graph_objects as go
from optuna.trial import TrialState

from dashboards._common import (
    BEST_COLOR,
    COMPLETE_COLOR,
    FAILED_COLOR,
    PRUNED_COLOR,
    RUNNING_COLOR,
    TEMPLATE,
    Snapshot,
    axis_title,
    empty_figure,
    floats,
    ints,
    metric_curve,
    short_name,
    snapshot,
)
from search.goal import DEFAULT, Goal

__all__ = ["Curve", "LearningCurvesInfo"]

TITLE = "Learning curves of all trials"
# Group name -> states, drawn in this order. Pruned curves go over the complete ones (faded
# grey, each ending in a cross where it was cut): on a big study the complete curves are a
# solid band, and pruning must stay visible on top of it.
GROUPS: dict[str, tuple[TrialState, ...]] = {
    "complete": (TrialState.COMPLETE,),
    "pruned": (TrialState.PRUNED,),
    "failed": (TrialState.FAIL,),
    "running": (TrialState.RUNNING, TrialState.WAITING),
}
STYLE = {
    "complete": {"color": COMPLETE_COLOR, "width": 1.2},
    "pruned": {"color": PRUNED_COLOR, "width": 1},
    "failed": {"color": FAILED_COLOR, "width": 1, "dash": "dot"},
    "running": {"color": RUNNING_COLOR, "width": 1.5},
}
PRUNE_MARK_COLOR = "rgba(90, 90, 90, 0.6)"


class Curve(NamedTuple):
    number: int
    epochs: list[int]  # 1-based
    values: list[float | None]  # the goal's metric after each epoch


class LearningCurvesInfo(NamedTuple):
    groups: dict[str, list[Curve]]  # keys of GROUPS, each possibly empty
    best: Curve | None  # the best complete trial, highlighted
    reason: str
    goal: Goal = DEFAULT


def _info(study: optuna.Study | Snapshot) -> LearningCurvesInfo:
    snap = snapshot(study)
    if snap.reason:
        return LearningCurvesInfo({}, None, snap.reason, snap.goal)
    groups: dict[str, list[Curve]] = {}
    for name, states in GROUPS.items():
        curves = []
        for t in snap.of_state(*states):
            values = metric_curve(t, snap.goal)
            if any(v is not None for v in values):
                curves.append(Curve(t.number, list(range(1, len(values) + 1)), values))
        groups[name] = curves
    if not any(groups.values()):
        n = len(snap.trials)
        why = f"no trial has reported an epoch yet ({n} trials)" if n else "no trials yet"
        return LearningCurvesInfo(groups, None, why, snap.goal)
    done = snap.best_first(snap.complete)
    best = next((c for c in groups["complete"] if done and c.number == done[0].number), None)
    return LearningCurvesInfo(groups, best, "", snap.goal)


def _joined(curves: list[Curve]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One polyline per trial, separated by NaN gaps; customdata carries the trial number."""
    xs: list[int] = []
    ys: list[float | None] = []
    ids: list[int] = []
    for c in curves:
        xs += [*c.epochs, 0]
        ys += [*c.values, None]
        ids += [c.number] * (len(c.epochs) + 1)
    return ints(xs), floats(ys), ints(ids)


def _last(c: Curve) -> tuple[int, float | None]:
    """(epoch, value) of a curve's last reported point."""
    for epoch, v in zip(reversed(c.epochs), reversed(c.values), strict=True):
        if v is not None:
            return epoch, v
    return c.epochs[-1], None


def _plot(info: LearningCurvesInfo) -> go.Figure:
    if info.reason:
        return empty_figure(TITLE, info.reason)
    fig = go.Figure()
    metric = short_name(info.goal)
    for name, curves in info.groups.items():
        if not curves:
            continue
        xs, ys, ids = _joined(curves)
        # Many curves: thinner ink each, so the density shows instead of one solid block.
        opacity = min(1.0, max(0.15, 30 / len(curves)))
        fig.add_trace(
            go.Scatter(
                x=xs, y=ys, customdata=ids, mode="lines", line=STYLE[name], opacity=opacity,
                name=f"{name} ({len(curves)})", connectgaps=False,
                hovertemplate=f"trial %{{customdata}}<br>epoch %{{x}}<br>{metric} %{{y:.4f}}"
                f"<extra>{name}</extra>",
            )
        )
        if name == "pruned":
            ends = [_last(c) for c in curves]
            fig.add_trace(
                go.Scatter(
                    x=ints([e for e, _ in ends]), y=floats([a for _, a in ends]),
                    customdata=ints([c.number for c in curves]), mode="markers",
                    marker={"symbol": "x-thin", "size": 6, "color": PRUNE_MARK_COLOR,
                            "line": {"width": 1, "color": PRUNE_MARK_COLOR}},
                    name="pruned here", hovertemplate="trial %{customdata} pruned after "
                    f"epoch %{{x}}<br>{metric} %{{y:.4f}}<extra></extra>",
                )
            )
    if info.best is not None:
        fig.add_trace(
            go.Scatter(
                x=info.best.epochs, y=floats(info.best.values), mode="lines",
                line={"color": BEST_COLOR, "width": 3}, name=f"best (trial {info.best.number})",
                hovertemplate=f"best trial<br>epoch %{{x}}<br>{metric} %{{y:.4f}}"
                "<extra></extra>",
            )
        )
    fig.update_layout(
        title={"text": TITLE}, template=TEMPLATE, height=480,
        xaxis={"title": {"text": "epoch"}}, yaxis={"title": {"text": axis_title(info.goal)}},
    )
    return fig

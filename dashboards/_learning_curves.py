"""Validation accuracy against epoch for every trial; pruned ones faded, so pruning is visible.

Each group (finished, pruned, failed, running) is drawn as ONE trace with gaps between
trials: a 2,000-trial study stays a handful of SVG paths instead of 2,000 traces.
"""

from __future__ import annotations

from typing import NamedTuple

import optuna
import plotly.graph_objects as go
from optuna.trial import TrialState

from dashboards._common import (
    BEST_COLOR,
    COMPLETE_COLOR,
    FAILED_COLOR,
    PRUNED_COLOR,
    RUNNING_COLOR,
    Snapshot,
    curve,
    empty_figure,
    snapshot,
)

__all__ = ["Curve", "LearningCurvesInfo"]

TITLE = "Learning curves of all trials"
# Group name -> states, drawn in this order (faded groups first, underneath).
GROUPS: dict[str, tuple[TrialState, ...]] = {
    "pruned": (TrialState.PRUNED,),
    "failed": (TrialState.FAIL,),
    "finished": (TrialState.COMPLETE,),
    "running": (TrialState.RUNNING, TrialState.WAITING),
}
STYLE = {
    "pruned": {"color": PRUNED_COLOR, "width": 1},
    "failed": {"color": FAILED_COLOR, "width": 1, "dash": "dot"},
    "finished": {"color": COMPLETE_COLOR, "width": 1.2},
    "running": {"color": RUNNING_COLOR, "width": 1.5},
}


class Curve(NamedTuple):
    number: int
    epochs: list[int]  # 1-based
    accs: list[float | None]


class LearningCurvesInfo(NamedTuple):
    groups: dict[str, list[Curve]]  # keys of GROUPS, each possibly empty
    best: Curve | None  # the best finished trial, highlighted
    reason: str


def _info(study: optuna.Study | Snapshot) -> LearningCurvesInfo:
    snap = snapshot(study)
    if snap.reason:
        return LearningCurvesInfo({}, None, snap.reason)
    groups: dict[str, list[Curve]] = {}
    for name, states in GROUPS.items():
        curves = []
        for t in snap.of_state(*states):
            accs = curve(t, "val_acc_curve")
            if any(a is not None for a in accs):
                curves.append(Curve(t.number, list(range(1, len(accs) + 1)), accs))
        groups[name] = curves
    if not any(groups.values()):
        n = len(snap.trials)
        return LearningCurvesInfo(
            groups, None, f"no trial has reported an epoch yet ({n} trials)" if n else "no trials yet"
        )
    done = snap.best_first(snap.complete)
    best = next((c for c in groups["finished"] if done and c.number == done[0].number), None)
    return LearningCurvesInfo(groups, best, "")


def _joined(curves: list[Curve]) -> tuple[list, list, list]:
    """One polyline per trial, separated by None gaps; customdata carries the trial number."""
    xs: list = []
    ys: list = []
    ids: list = []
    for c in curves:
        xs += [*c.epochs, None]
        ys += [*(None if a is None else round(a, 5) for a in c.accs), None]
        ids += [c.number] * len(c.epochs) + [None]
    return xs, ys, ids


def _plot(info: LearningCurvesInfo) -> go.Figure:
    if info.reason:
        return empty_figure(TITLE, info.reason)
    fig = go.Figure()
    for name, curves in info.groups.items():
        if not curves:
            continue
        xs, ys, ids = _joined(curves)
        fig.add_trace(
            go.Scatter(
                x=xs, y=ys, customdata=ids, mode="lines", line=STYLE[name],
                name=f"{name} ({len(curves)})", connectgaps=False,
                hovertemplate="trial %{customdata}<br>epoch %{x}<br>val acc %{y:.4f}"
                f"<extra>{name}</extra>",
            )
        )
    if info.best is not None:
        fig.add_trace(
            go.Scatter(
                x=info.best.epochs, y=info.best.accs, mode="lines",
                line={"color": BEST_COLOR, "width": 3}, name=f"best (trial {info.best.number})",
                hovertemplate="best trial<br>epoch %{x}<br>val acc %{y:.4f}<extra></extra>",
            )
        )
    fig.update_layout(
        title={"text": TITLE}, template="plotly_white", height=480,
        xaxis={"title": {"text": "epoch"}}, yaxis={"title": {"text": "validation accuracy"}},
    )
    return fig

"""Validation: the study's metric (search.goal) on the test split per schedule over new seeds,
mean ± std, baselines marked.

Reads the companion study that `python -m search validate` writes (`<study>.validate`), one
panel per validated training length (the searched length first). Each schedule is a row: its
mean with a ±1 std error bar and every seed as a dot; baselines are diamonds, searched
schedules circles. The panel title carries the verdict `best` prints. The companion's scores
(search.stats: higher is better) are shown as the metric's values (a loss as a loss).
"""

from __future__ import annotations

import shlex
from typing import NamedTuple

import optuna
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboards._common import (
    BEST_COLOR,
    BOTTOM_LEGEND,
    TEMPLATE,
    Snapshot,
    axis_title,
    empty_figure,
    floats,
    snapshot,
)
from search.goal import DEFAULT, Goal
from search.storage import hint_command
from search.validation.companion import companion_name, validation

__all__ = ["Panel", "ValidationInfo", "ValidationRow"]



def title(goal: Goal) -> str:
    return f"Validation: {goal.name('test')} over seeds (mean ± std), baselines marked"


TITLE = title(DEFAULT)
CANDIDATE_COLOR = "rgb(31, 119, 180)"
BASELINE_COLOR = "rgb(255, 127, 14)"


class ValidationRow(NamedTuple):
    label: str
    role: str  # "recommended", "candidate", "baseline" or "both" (searched = a baseline)
    mean: float  # the metric's value (Goal.value of the mean score)
    std: float
    seeds: list[int]
    scores: list[float]  # the metric's value on the test split per seed, same order
    diverged: int  # seeds that stopped on a non-finite loss


class Panel(NamedTuple):
    epochs: int
    rows: list[ValidationRow]  # best first
    verdict: str
    searched_epochs: int | None = None  # the search's length, where validation ran another


class ValidationInfo(NamedTuple):
    study: str  # the companion study
    panels: list[Panel]  # the default length first
    reason: str
    goal: Goal = DEFAULT


def _info(study: optuna.Study | Snapshot) -> ValidationInfo:
    snap = snapshot(study)
    if snap.reason:
        return ValidationInfo("", [], snap.reason, snap.goal)
    goal, name = snap.goal, snap.study.study_name
    hint = f"not validated yet: run `{hint_command(f'validate --study {shlex.quote(name)}')}`"
    first = validation(snap.study, recommended=snap.recommended)
    if first is None:
        return ValidationInfo(companion_name(name), [], hint, goal)
    from search.answer.text import validation_verdict  # the verdict `best` prints (torch)

    panels = []
    for v in [first, *(validation(snap.study, e, snap.recommended)
                       for e in first.other_epochs)]:
        assert v is not None  # the companion study exists: `first` was read from it
        rows = [
            ValidationRow(r.label, r.role, goal.value(r.mean), r.std, sorted(r.scores),
                [goal.value(r.scores[s]) for s in sorted(r.scores)], len(r.diverged))
            for r in v.ranked
        ]
        panels.append(Panel(v.epochs, rows, validation_verdict(v), v.searched_epochs))
    if not any(row.scores for p in panels for row in p.rows):
        return ValidationInfo(first.study, [], "no validation run has finished yet", goal)
    return ValidationInfo(first.study, panels, "", goal)


def _group(role: str) -> str:
    return {"recommended": "recommendation", "candidate": "searched schedule"}.get(role,
                                                                                  "baseline")


def _plot(info: ValidationInfo) -> go.Figure:
    if info.reason:
        return empty_figure(title(info.goal), info.reason)
    titles = [f"{p.epochs} epochs"
              + (f" (NOT the searched {p.searched_epochs})" if p.searched_epochs
                 and p.searched_epochs != p.epochs else "") + f": {p.verdict}"
              for p in info.panels]
    fig = make_subplots(rows=len(info.panels), cols=1, subplot_titles=titles,
                        vertical_spacing=0.16 if len(info.panels) > 1 else 0.0)
    shown: set[str] = set()
    for i, p in enumerate(info.panels, start=1):
        labels = [r.label + (f" ({r.diverged} diverged)" if r.diverged else "") for r in p.rows]
        for name, color, symbol in (("recommendation", BEST_COLOR, "star"),
                                    ("searched schedule", CANDIDATE_COLOR, "circle"),
                                    ("baseline", BASELINE_COLOR, "diamond")):
            picked = [(r, lab) for r, lab in zip(p.rows, labels, strict=True)
                      if _group(r.role) == name]
            if not picked:
                continue
            fig.add_trace(go.Scatter(
                x=floats([r.mean for r, _ in picked]), y=[lab for _, lab in picked],
                error_x={"type": "data", "array": floats([r.std for r, _ in picked]),
                         "thickness": 1.5, "width": 6},
                mode="markers", name=f"{name}: mean ± std", legendgroup=name,
                showlegend=name not in shown,
                marker={"symbol": symbol, "size": 14 if symbol == "star" else 12,
                        "color": color},
                customdata=[[len(r.scores)] for r, _ in picked],
                hovertemplate="%{y}<br>mean %{x:.4f} over %{customdata[0]} seeds<extra></extra>",
            ), row=i, col=1)
            fig.add_trace(go.Scatter(
                x=floats([s for r, _ in picked for s in r.scores]),
                y=[lab for r, lab in picked for _ in r.scores],
                customdata=[seed for r, _ in picked for seed in r.seeds],
                mode="markers", name=f"{name}: one seed", legendgroup=name,
                showlegend=name not in shown,
                marker={"symbol": "circle-open", "size": 7, "color": color, "opacity": 0.7},
                hovertemplate="seed %{customdata}: %{x:.4f}<extra>%{y}</extra>",
            ), row=i, col=1)
            shown.add(name)
        # best on top: categories are drawn bottom-up, so reverse
        fig.update_yaxes(categoryorder="array", categoryarray=labels[::-1], automargin=True,
                         row=i, col=1)
    fig.update_xaxes(title_text=axis_title(info.goal, "test"), row=len(info.panels), col=1)
    n_rows = sum(len(p.rows) for p in info.panels)
    fig.update_layout(
        title={"text": f"{title(info.goal)}<br><sup>study {info.study!r}</sup>"},
        height=180 + 40 * n_rows + 60 * len(info.panels), template=TEMPLATE,
        legend=BOTTOM_LEGEND,
    )
    fig.update_annotations(font={"size": 12})  # the subplot titles carry long verdicts
    return fig

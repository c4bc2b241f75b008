"""Per schedule family: how well it did and how much evidence there is (every family tried).

A box per family over its complete trials' values (the study's metric, search.goal), the best
marked with a star; the pruned trials' last reported values as faded crosses (from fewer
epochs, so not comparable with a complete run, but they show the family was tried). Every
family with any trial gets a row, labelled with its counts (complete, pruned, diverged =
pruned on a non-finite loss, failed) and the epochs its trials reached; a family resting on
fewer than THIN complete trials is marked "thin", so a reader does not take one lucky or
unlucky trial for a verdict. Families with complete trials come first, best first (by the
study's goal); the others after, by their best last report.
"""

from __future__ import annotations

import math
import statistics
from typing import NamedTuple

import optuna
import plotly.graph_objects as go
from optuna.trial import FrozenTrial, TrialState

from dashboards._common import (
    BEST_COLOR,
    BOTTOM_LEGEND,
    TEMPLATE,
    Snapshot,
    axis_title,
    empty_figure,
    epochs_run,
    floats,
    ints,
    last_value,
    metric_word,
    short_name,
    snapshot,
    value,
)
from search import record
from search.goal import DEFAULT, Goal

__all__ = ["FamilyStats", "FamiliesInfo", "THIN"]



def title(goal: Goal) -> str:
    return f"Schedule families: {goal.name()} and how often each was tried"


TITLE = title(DEFAULT)
THIN = 3  # fewer complete trials than this: the family's verdict rests on too little
PRUNED_MARK = "rgba(110, 110, 110, 0.55)"


class FamilyStats(NamedTuple):
    family: str
    values: list[float]  # values of complete trials, best first
    numbers: list[int]  # their trial numbers, same order
    best: float  # NaN without a complete trial
    median: float
    n_pruned: int  # stopped by the pruner
    n_diverged: int  # end_reason "non_finite_loss"
    n_failed: int  # state FAIL (out of memory, errors)
    pruned_values: list[float]  # last reported value of each pruned trial, best first
    pruned_numbers: list[int]
    epochs: tuple[int, int]  # fewest and most epochs its trials reached
    budget: int | None  # epochs of a full run (the trials' `epochs`)

    @property
    def n_complete(self) -> int:
        return len(self.values)

    @property
    def thin(self) -> bool:
        return self.n_complete < THIN


class FamiliesInfo(NamedTuple):
    families: list[FamilyStats]  # with complete trials best first, then the others
    reason: str
    goal: Goal = DEFAULT


def _stats(fam: str, trials: list[FrozenTrial], snap: Snapshot) -> FamilyStats:
    done = snap.best_first([t for t in trials if t.state == TrialState.COMPLETE
                            and isinstance(t.value, (int, float)) and math.isfinite(t.value)])
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    diverged = [t for t in pruned if record.of(t).diverged]
    cut = snap.best_first([t for t in pruned if not record.of(t).diverged])
    values = [value(t) for t in done]
    best, median = (values[0], statistics.median(values)) if values else (math.nan,) * 2
    reached = [epochs_run(t) for t in trials if t.state != TrialState.RUNNING] or [0]
    budgets = [b for t in trials if (b := record.of(t).epochs) is not None]
    return FamilyStats(
        fam, values, [t.number for t in done], best, median, len(pruned) - len(diverged),
        len(diverged), sum(t.state == TrialState.FAIL for t in trials),
        [last_value(t, snap.goal) or 0.0 for t in cut], [t.number for t in cut],
        (min(reached), max(reached)),
        int(max(budgets)) if budgets else None,
    )


def _info(study: optuna.Study | Snapshot) -> FamiliesInfo:
    snap = snapshot(study)
    if snap.reason:
        return FamiliesInfo([], snap.reason, snap.goal)
    by_family: dict[str, list[FrozenTrial]] = {}
    for t in snap.trials:
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL):
            by_family.setdefault(record.family_of(t), []).append(t)
    if not by_family:
        n = len(snap.trials)
        return FamiliesInfo([], f"no trial has ended yet ({n} running)" if n
                            else "no trials yet", snap.goal)
    rows = [_stats(f, ts, snap) for f, ts in by_family.items()]
    score = snap.goal.score

    def order(s: FamilyStats) -> tuple:
        if s.values:
            return (0, -score(s.best), s.family)
        return (1, -score(s.pruned_values[0]) if s.pruned_values else math.inf, s.family)

    return FamiliesInfo(sorted(rows, key=order), "", snap.goal)


def label(s: FamilyStats) -> str:
    """"StepLR: 1 complete, 2 pruned, epochs 2-10/10 (thin)": counts and how far trials got."""
    counts = [f"{n} {what}" for n, what in
              ((s.n_complete, "complete"), (s.n_pruned, "pruned"), (s.n_diverged, "diverged"),
               (s.n_failed, "failed")) if n or what == "complete"]
    lo, hi = s.epochs
    span = f"{lo}" if lo == hi else f"{lo}-{hi}"
    epochs = f"epochs {span}/{s.budget}" if s.budget else f"epochs {span}"
    return f"{s.family}: {', '.join(counts)}; {epochs}" + (" (thin)" if s.thin else "")


def _plot(info: FamiliesInfo) -> go.Figure:
    goal, name = info.goal, short_name(info.goal)
    if info.reason:
        return empty_figure(title(goal), info.reason)
    fig = go.Figure()
    labels = [label(s) for s in info.families]
    rows = list(zip(info.families, labels, strict=True))
    for s, lab in rows:
        if s.values:
            fig.add_trace(go.Box(
                x=floats(s.values), y=[lab] * len(s.values), name=lab, orientation="h",
                boxpoints="all", jitter=0.4, pointpos=0, marker={"size": 4, "opacity": 0.6},
                customdata=ints(s.numbers), showlegend=False, line={"width": 1},
                hovertemplate=f"trial %{{customdata}}<br>{name} %{{x:.4f}}<extra>{s.family}"
                "</extra>",
            ))
    pruned = [(s, lab) for s, lab in rows if s.pruned_values]
    if pruned:
        fig.add_trace(go.Scatter(
            x=floats([v for s, _ in pruned for v in s.pruned_values]),
            y=[lab for s, lab in pruned for _ in s.pruned_values],
            customdata=ints([n for s, _ in pruned for n in s.pruned_numbers]), mode="markers",
            marker={"symbol": "x-thin", "size": 8, "line": {"width": 1.5, "color": PRUNED_MARK}},
            name="pruned: last report", hovertemplate=f"trial %{{customdata}} pruned<br>last "
            f"{name} %{{x:.4f}}<extra></extra>",
        ))
    ranked = [(s, lab) for s, lab in rows if s.values]
    if ranked:
        fig.add_trace(go.Scatter(
            x=[s.best for s, _ in ranked], y=[lab for _, lab in ranked], mode="markers",
            marker={"symbol": "star", "size": 13, "color": BEST_COLOR}, name="best complete",
            hovertemplate="best %{x:.4f}<extra>%{y}</extra>",
        ))
    # A family without any value (only diverged or failed trials) still gets its row: a
    # note at the left edge (plotly drops a category that has no point).
    bare = [lab for s, lab in rows if not s.values and not s.pruned_values]
    if bare:
        left = min([v for s in info.families for v in (*s.values, *s.pruned_values)] or [0.0])
        fig.add_trace(go.Scatter(
            x=[left] * len(bare), y=bare, mode="text",
            text=[f"no {metric_word(goal)} reported"] * len(bare),
            textposition="middle right", textfont={"color": "#888", "size": 11},
            showlegend=False, hoverinfo="skip",
        ))
    thin = sum(s.thin for s in info.families)
    if ranked:
        win = ranked[0][0]
        head = (f"{win.family} best: {win.best:.4f}, median {win.median:.4f} over "
                f"{win.n_complete} complete")
    else:
        head = "no family has a complete trial yet"
    note = (f"{head}; {thin} of {len(info.families)} families thin (&lt; {THIN} complete "
            "trials): their rank is not a verdict")
    fig.update_layout(
        title={"text": f"{title(goal)}<br><sup>{note}</sup>"},
        height=190 + 34 * len(info.families), template=TEMPLATE,
        xaxis={"title": {"text": axis_title(goal, note="pruned: last report")}},
        # Best family on top: categories are drawn bottom-up, so reverse.
        yaxis={"categoryorder": "array", "categoryarray": labels[::-1], "automargin": True,
               "type": "category", "range": [-0.5, len(labels) - 0.5]},
        legend=BOTTOM_LEGEND,
        margin={"l": 10, "r": 10},
    )
    return fig

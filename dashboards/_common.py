"""What every figure shares: one read of the study's trials, and how to read a trial's attrs.

A 2,000-trial store is read once (`snapshot`) and the same `Snapshot` is handed to every
figure's `_info` step; `_info` also accepts a plain `optuna.Study` so that tests and users can
call it directly. Nothing here draws.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple, TypeGuard

import numpy as np
import optuna
import plotly.graph_objects as go
from optuna.trial import FrozenTrial, TrialState

from search import record
from search.goal import DEFAULT, Goal

__all__ = [
    "BEST_COLOR",
    "BOTTOM_LEGEND",
    "COMPLETE_COLOR",
    "FAILED_COLOR",
    "PRUNED_COLOR",
    "RUNNING_COLOR",
    "TEMPLATE",
    "Snapshot",
    "axis_title",
    "better_note",
    "curve",
    "empty_figure",
    "end_reason",
    "epoch_fractions",
    "epochs_run",
    "family_params",
    "floats",
    "fmt",
    "ints",
    "LRPoints",
    "last_value",
    "lr_points",
    "metric_curve",
    "metric_word",
    "no_complete_reason",
    "short_name",
    "snapshot",
    "storage_label",
    "value",
]

PRUNED_COLOR = "rgba(140, 140, 140, 0.25)"
FAILED_COLOR = "rgba(214, 39, 40, 0.35)"
RUNNING_COLOR = "rgba(255, 127, 14, 0.8)"
COMPLETE_COLOR = "rgba(31, 119, 180, 0.55)"
BEST_COLOR = "rgb(214, 39, 40)"


class Snapshot(NamedTuple):
    """All trials of a study, read once, grouped by state, with what the study optimises."""

    study: optuna.Study
    trials: tuple[FrozenTrial, ...]
    goal: Goal  # the study's metric and direction (search.goal): every "best" goes through it
    reason: str  # non-empty when no figure can be drawn at all (e.g. multi-objective)
    # The trial `best` recommends (search.answer.recommended_trial: the contest's leader, or a
    # plain search's best trial): every figure names it first, as the winner.
    recommended: int | None = None
    label: str = ""  # its name in the contest ("linear to zero"), "" for a plain search

    def of_state(self, *states: TrialState) -> list[FrozenTrial]:
        return [t for t in self.trials if t.state in states]

    @property
    def complete(self) -> list[FrozenTrial]:
        return [t for t in self.trials if t.state == TrialState.COMPLETE and _finite(t.value)]

    def score(self, trial: FrozenTrial) -> float | None:
        """The trial's `last_value` as a score (Goal.score: higher is better); None without
        one."""
        v = last_value(trial, self.goal)
        return None if v is None else self.goal.score(v)

    def best_first(self, trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
        """Trials with a value, the recommended one first, then best first by the study's goal
        (ties: lower trial number first)."""
        scored = [(s, t) for t in trials if (s := self.score(t)) is not None]
        return [t for _, t in sorted(scored, key=lambda st: (st[1].number != self.recommended,
                                                             -st[0], st[1].number))]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.trials:
            out[t.state.name.lower()] = out.get(t.state.name.lower(), 0) + 1
        return out


def snapshot(study: optuna.Study | Snapshot) -> Snapshot:
    """Read every trial once (no deep copies); a Snapshot passes through unchanged."""
    if isinstance(study, Snapshot):
        return study
    trials = tuple(study.get_trials(deepcopy=False))
    if len(study.directions) != 1:
        return Snapshot(study, trials, DEFAULT, "multi-objective studies are not supported")
    number, label = _recommended(study)
    return Snapshot(study, trials, Goal.of_study(study), "", number, label)


def _recommended(study: optuna.Study) -> tuple[int | None, str]:
    """The recommended trial and its contest label, as `best` has them (None: none yet)."""
    from search.answer import recommended_trial
    from search.errors import UserError

    try:
        trial, st = recommended_trial(study)
    except (UserError, ValueError):  # nothing complete yet, or a study of another shape
        return None, ""
    return trial.number, (st.leader.label if st is not None and st.leader else "")


def _finite(x: Any) -> TypeGuard[float]:
    return isinstance(x, (int, float)) and math.isfinite(x)


def family_params(trial: FrozenTrial) -> dict[str, Any]:
    """The family's own searched parameters, without the `<Family>.` prefix."""
    prefix = record.family_of(trial) + "."
    return {k[len(prefix) :]: v for k, v in trial.params.items() if k.startswith(prefix)}


def _gaps(raw: Sequence[Any]) -> list[float | None]:
    return [float(v) if _finite(v) else None for v in raw]


def curve(trial: FrozenTrial, key: str) -> list[float | None]:
    """A per-epoch curve from the user attrs (`lr_curve`); non-finite entries become None (a
    gap)."""
    return _gaps(record.of(trial).curve(key) or [])


def metric_curve(trial: FrozenTrial, goal: Goal) -> list[float | None]:
    """The goal's metric per epoch, as the trial reported it; non-finite entries become None.

    Falls back to the intermediate values (the runner reports the goal's metric to Optuna
    each epoch) for trials written before the curves existed or interrupted before the runner
    stored them.
    """
    raw = record.of(trial).metric_curve(goal.metric)
    if raw is None:
        iv = trial.intermediate_values
        raw = [iv[s] for s in sorted(iv)] if iv else []
    return _gaps(raw)


class LRPoints(NamedTuple):
    """The LR a trial applied, against the fraction of training at which it was applied."""

    fractions: list[float]  # 0 = the first optimizer step; 1 = the end of the run
    lrs: list[float | None]  # None where it can't go on a log axis
    per_step: bool  # from `lr_trace` (every k optimizer steps); False: one point per epoch


def lr_points(trial: FrozenTrial) -> LRPoints:
    """`lr_trace` (point i at step i*k of epochs*steps_per_epoch) where recorded, else the
    per-epoch `lr_curve` (epoch e starts at fraction e/E): stores written before the trace."""
    r = record.of(trial)
    trace, epochs, steps = r.lr_trace, r.epochs, r.steps_per_epoch
    if (trace is not None and isinstance(trace.get("lr"), list) and trace["lr"]
            and _finite(trace.get("every")) and _finite(epochs) and _finite(steps)
            and epochs * steps > 0):
        total, every = float(epochs * steps), float(trace["every"])
        lrs = [float(v) if _finite(v) and v > 0 else None for v in trace["lr"]]
        return LRPoints([i * every / total for i in range(len(lrs))], lrs, True)
    lrs = [v if v is not None and v > 0 else None for v in curve(trial, record.LR_CURVE)]
    n = int(epochs) if _finite(epochs) and epochs >= len(lrs) and epochs > 0 else len(lrs)
    return LRPoints([e / n for e in range(len(lrs))], lrs, False)


def epoch_fractions(trial: FrozenTrial, n: int) -> list[float]:
    """Where the end of each of `n` epochs lies in the fraction of the trial's budget."""
    epochs = record.of(trial).epochs
    total = int(epochs) if _finite(epochs) and epochs >= n and epochs > 0 else n
    return [(e + 1) / total for e in range(n)]


def last_value(trial: FrozenTrial, goal: Goal) -> float | None:
    """The goal's metric for a trial, in its own terms: its value, or for an unfinished one
    its last report (None: none finite)."""
    if trial.state == TrialState.COMPLETE:
        return float(trial.value) if _finite(trial.value) else None
    finite = [v for v in metric_curve(trial, goal) if v is not None]
    return finite[-1] if finite else None


def epochs_run(trial: FrozenTrial) -> int:
    return record.epochs_trained(trial)


def value(trial: FrozenTrial) -> float:
    """The objective value of a finished trial (callers filter with Snapshot.complete)."""
    return float(record.value_of(trial))


# How figures name the metric. Accuracy keeps the wording the figures had before goals
# ("validation accuracy", "val acc"); another metric is named as the study file names it, with
# the direction on the axes, so "val_loss" or "perplexity" is never read the wrong way up.
# Value axes are never reversed and values never negated: for a minimised metric the best is
# at the bottom (or on the left); ranked lists (rows, legends) are always best first.


def _which_way(goal: Goal) -> str:
    return "" if goal.is_accuracy else f"{goal.better} is better"  # no one misreads accuracy


def better_note(goal: Goal) -> str:
    """" (lower is better)" after another metric's name; "" for accuracy."""
    return f" ({_which_way(goal)})" if _which_way(goal) else ""


def axis_title(goal: Goal, split: str = "validation", note: str = "") -> str:
    """A value axis's title: "validation accuracy", "val_loss (lower is better)"; with a
    `note`, "validation accuracy (note)", "val_loss (note; lower is better)"."""
    notes = [n for n in (note, _which_way(goal)) if n]
    return goal.name(split) + (f" ({'; '.join(notes)})" if notes else "")


def short_name(goal: Goal) -> str:
    """The value's name in a hover, a legend or a column: "val acc", "val_loss"."""
    return "val acc" if goal.is_accuracy else goal.metric


def metric_word(goal: Goal) -> str:
    """The metric in a sentence, whatever the split: "accuracy", "val_loss"."""
    return "accuracy" if goal.is_accuracy else goal.metric


def end_reason(trial: FrozenTrial) -> str:
    """Why a trial stopped: the runner's `end_reason`, else its state ("complete", "running")."""
    return record.of(trial).end_reason or trial.state.name.lower()


def fmt(value: Any) -> str:
    """Compact number for labels: 3 significant digits, ints and strings as they are."""
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    return f"{value:.3g}"


# Figures go into the study as JSON, 2 kB per row, one transaction per row (optuna-dashboard's
# format), so their size is the report's main cost on a big store. Typed arrays (plotly.js
# decodes base64 `bdata`) and a small template of our own (plotly's named templates add 8 kB
# to every figure) keep a 2,000-trial study near 0.6 MB.
_AXIS = {"zeroline": False, "gridcolor": "#ebebeb", "linecolor": "#888", "showline": True,
         "ticks": "outside", "tickcolor": "#888", "automargin": True}
# A Template object, not a dict: update_layout merges a dict into plotly's default template.
TEMPLATE = go.layout.Template(
    layout={"xaxis": _AXIS, "yaxis": _AXIS, "paper_bgcolor": "white", "plot_bgcolor": "white",
            "hovermode": "closest", "font": {"color": "#2a3f5f"}, "title": {"x": 0.05}}
)


# A horizontal legend at the foot of the figure (container coordinates), below the x-axis
# title: one placed in plot coordinates lands on the tick labels once the plot is short.
BOTTOM_LEGEND = {"orientation": "h", "x": 0, "xanchor": "left", "yref": "container", "y": 0,
                 "yanchor": "bottom"}


def floats(values: Sequence[float | None]) -> np.ndarray:
    """float32 array for plotting; None becomes NaN (a gap in a line)."""
    return np.array([np.nan if v is None else v for v in values], dtype=np.float32)


def ints(values: Sequence[int]) -> np.ndarray:
    """The smallest signed integer array that holds `values` (epochs, trial numbers)."""
    arr = np.asarray(values, dtype=np.int64)
    for dtype in (np.int8, np.int16, np.int32):
        info = np.iinfo(dtype)
        if arr.size == 0 or (info.min <= arr.min() and arr.max() <= info.max):
            return arr.astype(dtype)
    return arr


def empty_figure(title: str, reason: str) -> go.Figure:
    """A figure with nothing to show says why, instead of failing or drawing empty axes."""
    fig = go.Figure()
    fig.add_annotation(
        text=reason, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
        font={"size": 16, "color": "#555"},
    )
    fig.update_layout(
        title={"text": title}, height=260, template=TEMPLATE,
        xaxis={"visible": False}, yaxis={"visible": False},
    )
    return fig


def no_complete_reason(snap: Snapshot) -> str:
    """The standard message when there is no complete trial, with what there is instead."""
    counts = snap.counts()
    if not counts:
        return "no trials yet"
    parts = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    return f"no complete trial yet ({parts})"


def storage_label(study: optuna.Study) -> str | None:
    """The study's storage URL for printing, password hidden; None where it has no URL."""
    from search import compat
    from search.storage import redact

    url = compat.url_of(compat.storage_of(study))
    return redact(url) if isinstance(url, str) else None

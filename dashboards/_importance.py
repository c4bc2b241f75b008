"""Parameter importance by Optuna 5's conditional PED-ANOVA.

Optuna 5.0's `PedAnovaImportanceEvaluator` handles conditional parameters itself: each
`<Family>.<arg>` is scored within the trials where it is active (one regime per distribution,
"inactive" being a regime of its own), so one evaluation covers the whole hierarchical space.
The evaluator reads the study's trials again; to keep a 2,000-trial store to one read we hand
it an in-memory study holding only what it looks at (params, distributions, value), the
value as its score (search.goal: higher is better, whatever the study's direction), so the
copy is always maximised.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import optuna
import plotly.graph_objects as go
from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances

from dashboards._common import TEMPLATE, Snapshot, empty_figure, snapshot
from search import record

__all__ = ["ImportanceInfo", "MIN_TRIALS"]

TITLE = "Parameter importance (conditional PED-ANOVA)"
MIN_TRIALS = 10  # top 10% must hold at least one trial for the estimate to mean anything
KIND_COLOR = {"family": "#d62728", "conditional": "#1f77b4", "shared": "#2ca02c"}


class ImportanceInfo(NamedTuple):
    importances: list[tuple[str, float]]  # most important first, normalized to sum 1
    kinds: dict[str, str]  # param -> "family" (the `scheduler` choice) | "conditional" | "shared"
    n_trials: int
    reason: str


def _kind(name: str) -> str:
    if name == "scheduler":
        return "family"
    return "conditional" if "." in name else "shared"


def _slim_copy(snap: Snapshot) -> optuna.Study:
    storage = optuna.storages.InMemoryStorage()
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not "A new study created in memory"
    try:
        storage.create_new_study([optuna.study.StudyDirection.MAXIMIZE],
                                 "schedsearch-importance")
    finally:
        optuna.logging.set_verbosity(level)
    study = optuna.Study("schedsearch-importance", storage)
    study.add_trials(
        optuna.trial.create_trial(params=t.params, distributions=t.distributions,
                                  value=snap.goal.score(record.value_of(t)))
        for t in snap.complete
    )
    return study


def _info(study: optuna.Study | Snapshot) -> ImportanceInfo:
    snap = snapshot(study)
    if snap.reason:
        return ImportanceInfo([], {}, 0, snap.reason)
    n = len(snap.complete)
    if n < MIN_TRIALS:
        return ImportanceInfo(
            [], {}, n, f"needs at least {MIN_TRIALS} complete trials, the study has {n} complete"
        )
    with warnings.catch_warnings():
        # "Some regimes have less than 2 trials", "quantiles select the same set": expected
        # on small or narrow studies, and the figure's subtitle already says how many trials.
        warnings.simplefilter("ignore")
        result = get_param_importances(_slim_copy(snap), evaluator=PedAnovaImportanceEvaluator())
    if not result:
        return ImportanceInfo([], {}, n, "no parameters were searched")
    ordered = sorted(result.items(), key=lambda kv: (-kv[1], kv[0]))
    return ImportanceInfo(ordered, {k: _kind(k) for k, _ in ordered}, n, "")


def _plot(info: ImportanceInfo) -> go.Figure:
    if info.reason:
        return empty_figure(TITLE, info.reason)
    rows = info.importances[::-1]  # most important on top
    fig = go.Figure()
    for kind, color in KIND_COLOR.items():
        picked = [(k, v) for k, v in rows if info.kinds[k] == kind]
        if not picked:
            continue
        fig.add_trace(
            go.Bar(
                x=[v for _, v in picked], y=[k for k, _ in picked], orientation="h",
                name=kind, marker={"color": color},
                hovertemplate="%{y}: %{x:.3f}<extra>" + kind + "</extra>",
            )
        )
    note = (
        f"importance of reaching the top 10% of {info.n_trials} complete trials; "
        "conditional parameters are scored where active"
    )
    fig.update_layout(
        title={"text": f"{TITLE}<br><sup>{note}</sup>"}, template=TEMPLATE,
        height=160 + 22 * len(rows), barmode="overlay",
        xaxis={"title": {"text": "importance (sums to 1)"}},
        yaxis={"categoryorder": "array", "categoryarray": [k for k, _ in rows],
               "automargin": True},
    )
    return fig

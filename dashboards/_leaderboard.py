"""Leaderboard: the top trials, one row each (family, key parameters, value, epochs, end).

Finished trials rank first, by their value (best first by the study's goal, search.goal), so
the first row is the trial `best` recommends. Unfinished ones follow by their last reported
value (from fewer epochs, so not comparable
with a finished run): a study with few finished trials still gets a useful table, and the
end reason says why each stopped.
"""

from __future__ import annotations

from typing import NamedTuple

import optuna
import plotly.graph_objects as go

from dashboards._common import (
    TEMPLATE,
    Snapshot,
    better_note,
    empty_figure,
    end_reason,
    epochs_run,
    family_params,
    fmt,
    last_value,
    metric_word,
    no_complete_reason,
    short_name,
    snapshot,
)
from search import record
from search.goal import DEFAULT, Goal

__all__ = ["LeaderboardInfo", "LeaderboardRow"]

TITLE = "Leaderboard: top trials"


def rule(goal: Goal) -> str:
    """How the rows are ranked ("ranked: complete trials by final val acc, ...")."""
    return (f"ranked: complete trials by final {short_name(goal)}{better_note(goal)}, then "
            "pruned ones by their last report (fewer epochs: not comparable)")


RULE = rule(DEFAULT)
SHARED = ("lr", "warmup_epochs")  # shared knobs that shape the schedule, after the family's own
PARAMS_CHARS_PER_LINE = 60  # the key-parameters column wraps at about this width


class LeaderboardRow(NamedTuple):
    rank: int
    number: int
    family: str
    params: str  # "gamma=0.1, step_size=5, lr=0.05"
    value: float  # the study's metric: the final value, or a pruned trial's last report
    epochs_run: int
    epochs: int | None  # the budget, from the `epochs` user attr
    end: str  # "complete", "pruned", "non_finite_loss", ...


class LeaderboardInfo(NamedTuple):
    rows: list[LeaderboardRow]
    reason: str
    goal: Goal = DEFAULT


def _key_params(trial: optuna.trial.FrozenTrial) -> str:
    own = family_params(trial)
    parts = [f"{k}={fmt(v)}" for k, v in sorted(own.items())]
    parts += [f"{k}={fmt(trial.params[k])}" for k in SHARED if k in trial.params]
    return ", ".join(parts)


def _name(t: optuna.trial.FrozenTrial) -> str:
    """The family; a contest's fixed run by its contender ("schedule-free SGD (LR grid)",
    "trial 28 PolynomialLR, seed 2"): several rows may be one contender on other seeds."""
    r = record.of(t)
    label = r.label if r.label is not None else record.family_of(t)
    if r.stage == "reference":
        return f"{label} (LR grid)"
    if r.stage == "race":
        return f"{label}, seed {r.seed}"
    return record.family_of(t)


def _info(study: optuna.Study | Snapshot, top: int = 10) -> LeaderboardInfo:
    snap = snapshot(study)
    if snap.reason:
        return LeaderboardInfo([], snap.reason, snap.goal)
    done = snap.best_first(snap.complete)
    finished = {t.number for t in done}
    ranked = (done + snap.best_first([t for t in snap.trials if t.number not in finished]))[:top]
    if not ranked:
        return LeaderboardInfo([], f"{no_complete_reason(snap)}: no trial reported "
                               f"{metric_word(snap.goal)}", snap.goal)
    rows = []
    for rank, t in enumerate(ranked, start=1):
        rows.append(
            LeaderboardRow(
                rank, t.number, _name(t), _key_params(t), last_value(t, snap.goal) or 0.0,
                epochs_run(t), record.of(t).epochs,
                end_reason(t),
            )
        )
    return LeaderboardInfo(rows, "", snap.goal)


def _plot(info: LeaderboardInfo) -> go.Figure:
    if info.reason:
        return empty_figure(TITLE, info.reason)
    rows = info.rows
    header = ["#", "trial", "family", "key parameters", short_name(info.goal), "epochs", "end"]
    # "complete" rows white, the others grey: the ranking rule's two groups
    cells = [
        [r.rank for r in rows],
        [r.number for r in rows],
        [r.family for r in rows],
        [r.params for r in rows],
        [f"{r.value:.4f}" for r in rows],
        [f"{r.epochs_run}/{r.epochs}" if r.epochs else str(r.epochs_run) for r in rows],
        [r.end for r in rows],
    ]
    shade = ["#ffffff" if r.end == "complete" else "#f2f2f2" for r in rows]
    lines = sum(1 + len(r.params) // PARAMS_CHARS_PER_LINE for r in rows)
    fig = go.Figure(
        go.Table(
            columnwidth=[3, 4, 15, 34, 8, 7, 10],
            header={"values": header, "align": "left", "fill_color": "#dfe7f2", "height": 28},
            cells={"values": cells, "align": "left", "fill_color": [shade] * len(header),
                   "height": 24},
        )
    )
    fig.update_layout(
        # Title band + header + rows (+ slack): a Table scrolls, hiding rows, when too short.
        title={"text": f"{TITLE}<br><sup>{rule(info.goal)}</sup>"},
        height=80 + 30 + 26 * lines + 20,
        template=TEMPLATE, margin={"l": 10, "r": 10, "t": 80, "b": 10},
    )
    return fig

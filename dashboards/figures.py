"""The figure registry: name -> (`_info`, `_plot`), in the report's top-to-bottom order.

    figs = make_figures(study)          # one read of the trials, every figure
    save_figures(study, figs)           # the same figures inside optuna-dashboard

Each figure is a pure `_info(study_or_snapshot) -> NamedTuple` step (tested on studies built in
memory) and a drawing `_plot(info) -> go.Figure` step, as in optuna's visualization module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import optuna
import plotly.graph_objects as go
import sqlalchemy.exc

from dashboards import (
    _families,
    _history,
    _importance,
    _leaderboard,
    _learning_curves,
    _lr_curves,
    _params,
    validation,
)
from dashboards._common import Snapshot, snapshot

__all__ = [
    "FIGURES",
    "GRAPH_ID_PREFIX",
    "STORE_ERRORS",
    "Figure",
    "make_figures",
    "save_figures",
    "snapshot",
]

GRAPH_ID_PREFIX = "schedsearch-"  # optuna-dashboard graph ids: fixed, so a refresh overwrites
# What saving into the store raises when it can't write (a read-only database user, a locked
# or full disk): callers turn it into one line instead of a traceback.
STORE_ERRORS = (optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError)


class Figure(NamedTuple):
    title: str
    info: Callable[..., Any]  # (Study | Snapshot[, top]) -> info
    plot: Callable[[Any], go.Figure]
    uses_top: bool = False  # takes the `top` argument (how many trials to show)


FIGURES: dict[str, Figure] = {
    "leaderboard": Figure(_leaderboard.TITLE, _leaderboard._info, _leaderboard._plot, True),
    "validation": Figure(validation.TITLE, validation._info, validation._plot),
    "families": Figure(_families.TITLE, _families._info, _families._plot),
    "lr-curves": Figure(_lr_curves.TITLE, _lr_curves._info, _lr_curves._plot, True),
    "learning-curves": Figure(
        _learning_curves.TITLE, _learning_curves._info, _learning_curves._plot
    ),
    "history": Figure(_history.TITLE, _history._info, _history._plot),
    "importance": Figure(_importance.TITLE, _importance._info, _importance._plot),
    "params": Figure(_params.TITLE, _params._info, _params._plot),
}


def make_figures(
    study: optuna.Study | Snapshot, top: int = 10, names: list[str] | None = None
) -> dict[str, go.Figure]:
    """Every registered figure (or those in `names`), from one read of the study's trials."""
    snap = snapshot(study)
    unknown = sorted(set(names or ()) - set(FIGURES))
    if unknown:
        raise ValueError(f"figure must be one of {', '.join(FIGURES)} but got {unknown[0]!r}")
    out = {}
    for name, fig in FIGURES.items():
        if names is None or name in names:
            info = fig.info(snap, top) if fig.uses_top else fig.info(snap)
            out[name] = fig.plot(info)
    return out


def save_figures(study: optuna.Study, figures: dict[str, go.Figure]) -> list[str]:
    """Store the figures in the study, where optuna-dashboard shows them beside its own plots.

    Ids are fixed (`schedsearch-<name>`), so saving again replaces the previous version.
    The dashboard draws each figure in a fixed 450-pixel panel, so they are stored without
    the report's height (and the figures handed in are left as they were).
    """
    from optuna_dashboard import save_plotly_graph_object

    ids = []
    for name, fig in figures.items():
        height = fig.layout.height
        fig.layout.height = None
        try:
            gid = GRAPH_ID_PREFIX + name
            ids.append(save_plotly_graph_object(study, fig, graph_object_id=gid))
        finally:
            fig.layout.height = height
    return ids

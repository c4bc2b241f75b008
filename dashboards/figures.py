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
    _lr_law,
    _lr_scores,
    _params,
    _winner,
    validation,
)
from dashboards._common import BOTTOM_LEGEND, Snapshot, snapshot
from search import compat
from search.goal import Goal

__all__ = [
    "FIGURES",
    "GRAPH_ID_PREFIX",
    "STORE_ERRORS",
    "Figure",
    "for_tile",
    "make_figures",
    "save_figures",
    "snapshot",
]

GRAPH_ID_PREFIX = "schedsearch-"  # optuna-dashboard graph ids: fixed, so a refresh overwrites
# What saving into the store raises when it can't write (a read-only database user, a locked
# or full disk): callers turn it into one line instead of a traceback.
STORE_ERRORS = (optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError)


class Figure(NamedTuple):
    title: str  # for an accuracy study (`heading` names another study's metric)
    info: Callable[..., Any]  # (Study | Snapshot[, top]) -> info
    plot: Callable[[Any], go.Figure]
    uses_top: bool = False  # takes the `top` argument (how many trials to show)
    titled: Callable[[Goal], str] | None = None  # the title for a study's goal, where it names
    # the metric

    def heading(self, goal: Goal) -> str:
        """The figure's title for a study with this goal (the report's contents line)."""
        return self.titled(goal) if self.titled is not None else self.title


FIGURES: dict[str, Figure] = {
    "leaderboard": Figure(_leaderboard.TITLE, _leaderboard._info, _leaderboard._plot, True),
    "validation": Figure(validation.TITLE, validation._info, validation._plot,
                         titled=validation.title),
    "winner": Figure(_winner.TITLE, _winner._info, _winner._plot, titled=_winner.title),
    "lr-scores": Figure(_lr_scores.TITLE, _lr_scores._info, _lr_scores._plot),
    "lr-law": Figure(_lr_law.TITLE, _lr_law._info, _lr_law._plot),
    "families": Figure(_families.TITLE, _families._info, _families._plot,
                       titled=_families.title),
    "lr-curves": Figure(_lr_curves.TITLE, _lr_curves._info, _lr_curves._plot, True),
    "learning-curves": Figure(
        _learning_curves.TITLE, _learning_curves._info, _learning_curves._plot
    ),
    "history": Figure(_history.TITLE, _history._info, _history._plot),
    "importance": Figure(_importance.TITLE, _importance._info, _importance._plot),
    "params": Figure(_params.TITLE, _params._info, _params._plot, titled=_params.title),
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


TILE_HEIGHT = 450  # optuna-dashboard draws a saved figure in a 450-px box, half the page wide
# A title line wraps past this: a half-width tile at 1366 px is ~580 px wide. Plotly's tool
# bar stands upright at the right edge (in its own margin), so it covers no title.
TILE_TITLE_CHARS = 60
TILE_SUB_CHARS = 90  # the smaller subtitle lines
TILE_NOTE_CHARS = 70  # subplot titles and other notes drawn in the plot


def _wrap(text: str, width: int) -> list[str]:
    words, lines = text.split(" "), [""]
    for w in words:
        if lines[-1] and len(lines[-1]) + 1 + len(w) > width:
            lines.append(w)
        else:
            lines[-1] = f"{lines[-1]} {w}".strip()
    return lines


def for_tile(fig: go.Figure) -> go.Figure:
    """A copy of a report figure laid out for optuna-dashboard's tile (about 600 x 450 px at a
    1366-px laptop width): no height of its own, the title and subtitle wrapped to the tile's
    width with a top margin that holds them, the legend below the plot in a smaller font, so
    neither is cut off nor drawn over the axes."""
    tile = go.Figure(fig)
    tile.layout.height = None
    text = tile.layout.title.text or ""
    head, _, sub = text.partition("<br><sup>")
    lines = _wrap(head, TILE_TITLE_CHARS)
    subs = [w for part in sub.removesuffix("</sup>").split("<br>") if part
            for w in _wrap(part, TILE_SUB_CHARS)]
    title = "<br>".join(lines) + ("<br><sup>" + "<br>".join(subs) + "</sup>" if subs else "")
    for note in tile.layout.annotations:  # subplot titles carry long verdicts; reasons too
        if note.text and "<br>" not in note.text:
            note.text = "<br>".join(_wrap(note.text, TILE_NOTE_CHARS))
    tile.update_layout(
        title={"text": title, "font": {"size": 14}, "x": 0.02, "xanchor": "left",
               "yref": "container", "y": 1, "yanchor": "top", "pad": {"t": 14}},
        margin={"t": 30 + 18 * len(lines) + 13 * len(subs), "l": 10, "r": 40, "b": 10},
        modebar={"orientation": "v"},
    )
    # A menu (the params figure's family choice) goes between the title and the plot.
    menus = len(tile.layout.updatemenus)
    for menu in tile.layout.updatemenus:
        menu.update(y=1, yanchor="bottom", pad={"b": 6, "l": 0, "t": 0})
    tile.update_layout(
        margin={"t": 30 + 18 * len(lines) + 13 * len(subs) + 36 * menus},
        legend=BOTTOM_LEGEND | {"font": {"size": 10}, "title": {"text": ""}},
        font={"size": 11},
    )
    return tile


def save_figures(study: optuna.Study, figures: dict[str, go.Figure]) -> list[str]:
    """Store the figures in the study, where optuna-dashboard shows them beside its own plots.

    Ids are fixed (`schedsearch-<name>`), so saving again replaces the previous version. All
    figures are replaced in one step: optuna-dashboard's own writer lays each figure out as
    study system attributes, collected here first, and a database store then writes them in
    one transaction, so an interrupted save leaves the previous figures whole. Each is laid
    out for the dashboard's tile (`for_tile`); the figures handed in are left as they were.
    """
    from optuna_dashboard import save_plotly_graph_object

    collected = _Collected(compat.storage_of(study))
    stand_in = compat.study_stand_in(collected, compat.study_id(study))
    ids = [save_plotly_graph_object(stand_in, for_tile(fig),
                                    graph_object_id=GRAPH_ID_PREFIX + name)
           for name, fig in figures.items()]
    compat.set_study_system_attrs(compat.storage_of(study), compat.study_id(study),
                                  collected.attrs)
    return ids


class _Collected:
    """A study's storage as optuna-dashboard's writer sees it: reads go to the store, writes
    are collected (in order; a later write of a key wins) instead of made."""

    def __init__(self, storage: Any) -> None:
        self.storage = storage
        self.attrs: dict[str, Any] = {}

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return {**self.storage.get_study_system_attrs(study_id), **self.attrs}

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        self.attrs[key] = value

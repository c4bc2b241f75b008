"""The best LR against training length, per reference: the LR law that `best --epochs N` uses.

For each reference shape a contest tuned at several horizons: its best LR at each horizon (the
peak of that horizon's grid, search.contest.law.peak) with its bootstrap interval, and the
fitted law log LR* = a - beta log T drawn to EXTEND times the longest horizon. The
recommendation's law is drawn thick. Pure data step `_info` (tested directly), drawing step
`_plot`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import optuna
import plotly.graph_objects as go

from dashboards._common import BOTTOM_LEGEND, TEMPLATE, Snapshot, empty_figure, snapshot
from search.contest.law import Law
from search.contest.standing import standing

__all__ = ["LRLawInfo"]

TITLE = "Best learning rate against training length, per reference (the LR law)"
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b"]
EXTEND = 4  # the fit is drawn to this many times the longest horizon


class LRLawInfo(NamedTuple):
    laws: list[Law]
    recommended: str  # the slot whose law carries the recommendation ("" where none)
    reason: str


def _info(study: optuna.Study | Snapshot) -> LRLawInfo:
    snap = snapshot(study)
    if snap.reason:
        return LRLawInfo([], "", snap.reason)
    st = standing(snap.study)
    if st is None:
        return LRLawInfo([], "", "a plain search: the LR law needs a study with a [contest] "
                                 "and `horizons`")
    if len(st.state.settings.lengths) < 2:
        return LRLawInfo([], "", "the contest tuned the LRs at one length only: add "
                                 "`horizons = [2, 4, 8]` (say) to its [contest] table")
    laws = list(st.laws.values())
    if not laws:
        return LRLawInfo([], "", "no reference is tuned at two horizons yet")
    lead = st.leader
    carried = st.transfer(lead, None).law if lead is not None else None
    return LRLawInfo(laws, carried.slot if carried is not None else "", "")


def _plot(info: LRLawInfo) -> go.Figure:
    if info.reason:
        return empty_figure(TITLE, info.reason)
    fig = go.Figure()
    for i, law in enumerate(info.laws):
        color = COLORS[i % len(COLORS)]
        mine = law.slot == info.recommended
        hs = list(law.horizons)
        fig.add_trace(go.Scatter(
            x=hs, y=list(law.lrs), mode="markers", legendgroup=law.slot,
            name=f"{law.label}: beta {law.beta:.2f} [{law.beta_low:.2f}, {law.beta_high:.2f}]"
                 f"{' (recommended)' if mine else ''}",
            marker={"size": 11 if mine else 8, "color": color,
                    "symbol": ["diamond-open" if e else "diamond" for e in law.edges]},
            error_y={"type": "data", "symmetric": False, "color": color,
                     "array": [hi - lr for hi, lr in zip(law.lrs_high, law.lrs, strict=True)],
                     "arrayminus": [lr - lo for lo, lr in zip(law.lrs_low, law.lrs,
                                                              strict=True)]},
            hovertemplate=f"{law.label}<br>%{{x}} epochs<br>best LR %{{y:.3g}}<extra></extra>"))
        top = max(hs) * EXTEND
        xs = [min(hs) * (top / min(hs)) ** (k / 40) for k in range(41)]
        fig.add_trace(go.Scatter(
            x=xs, y=[law.lr_at(x) for x in xs], mode="lines", legendgroup=law.slot,
            showlegend=False, line={"color": color, "width": 3 if mine else 1.5,
                                    "dash": "solid" if not law.flat else "dot"},
            hovertemplate=f"{law.label}: the law<br>%{{x:.3g}} epochs<br>LR %{{y:.3g}}"
                          "<extra></extra>"))
    fig.add_vrect(x0=max(max(law.horizons) for law in info.laws),
                  x1=max(max(law.horizons) for law in info.laws) * EXTEND,
                  fillcolor="#999", opacity=0.08, line_width=0)
    fig.update_xaxes(title_text="training length (epochs)", type="log")
    fig.update_yaxes(title_text="best learning rate", type="log")
    lo = min(min(law.lrs_low or law.lrs) for law in info.laws)
    hi = max(max(law.lrs_high or law.lrs) for law in info.laws)
    fig.update_yaxes(range=[math.log10(lo) - 0.2, math.log10(hi) + 0.2])
    fig.update_layout(
        title={"text": f"{TITLE}<br><sup>each horizon's best LR (open: on its grid's edge) "
                       f"with its 95% interval; the fitted law, dotted where flat; shaded: "
                       f"beyond the horizons measured</sup>"},
        template=TEMPLATE, height=520, legend=BOTTOM_LEGEND,
        margin={"l": 10, "r": 10, "t": 90})
    return fig

"""The report page: one self-contained HTML file (plotly.js embedded once, no CDN, no fetches)."""

from __future__ import annotations

import datetime as dt
import html

import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

from dashboards import _recommendation
from dashboards._common import Snapshot
from dashboards.figures import FIGURES

__all__ = ["render_page"]

PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}
STYLE = """
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 1200px; padding: 0 16px;
       color: #222; background: #fff; }
header { border-bottom: 1px solid #ddd; margin-bottom: 12px; }
h1 { font-size: 1.5em; margin: 16px 0 4px; }
h2 { font-size: 1.15em; margin: 24px 0 8px; }
.meta { color: #555; margin: 4px 0 12px; }
nav a { margin-right: 12px; }
pre { background: #f6f8fa; border: 1px solid #e1e4e8; padding: 12px; overflow-x: auto; }
.reason { color: #555; font-style: italic; }
section.figure { margin: 8px 0 20px; }
"""


def _figure_html(name: str, fig: go.Figure) -> str:
    div = pio.to_html(
        fig, full_html=False, include_plotlyjs=False, div_id=f"fig-{name}",
        config=PLOTLY_CONFIG, default_width="100%",
        default_height=f"{int(fig.layout.height or 450)}px",
    )
    return f'<section class="figure" id="{name}">\n{div}\n</section>'


def render_page(
    snap: Snapshot,
    recommendation: _recommendation.RecommendationInfo,
    figures: dict[str, go.Figure],
    storage: str | None = None,
) -> str:
    """The whole report as one HTML string, top to bottom as the issue lists the parts."""
    name = html.escape(snap.study.study_name)
    n = snap.counts()
    # One vocabulary with `run` and `studies`: finished = complete + pruned (what --trials counts).
    c, p = n.pop("complete", 0), n.pop("pruned", 0)
    counts = f"{c + p} finished = {c} complete + {p} pruned" + "".join(
        f"; {k} {'failed' if state == 'fail' else state}" for state, k in sorted(n.items()))
    when = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    where = f" &middot; storage {html.escape(storage)}" if storage else ""
    goal = snap.goal
    aim = f"{goal.metric}, {goal.better} is better"
    titles = {"recommendation": _recommendation.TITLE}
    titles |= {key: FIGURES[key].heading(goal) if key in FIGURES else key for key in figures}
    nav = " ".join(f'<a href="#{key}">{html.escape(t)}</a>' for key, t in titles.items())
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{name}: schedule report</title>",
        f"<style>{STYLE}</style>",
        # plotly.js once, inline: the file works offline and from any directory.
        f'<script type="text/javascript">{get_plotlyjs()}</script>',
        "</head>",
        "<body>",
        f"<header><h1>Study {name}: learning-rate schedules</h1>",
        f'<p class="meta">trials: {html.escape(counts)} &middot; objective: '
        f"{html.escape(aim)}{where} &middot; generated {when}</p>",
        f"<nav>{nav}</nav></header>",
        _recommendation._html(recommendation),
        *(_figure_html(key, fig) for key, fig in figures.items()),
        "</body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"
